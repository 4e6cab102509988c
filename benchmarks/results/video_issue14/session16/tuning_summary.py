import json, sys
for f in sys.argv[1:]:
    d = json.load(open(f)); rows = d["rows"]
    fav = [r for r in rows if r["category"] != "anti"]; anti = [r for r in rows if r["category"] == "anti"]
    m = lambda rs, k: sum(r["per_constraint"][k] if k != "success" else r["success"] for r in rs) / max(1, len(rs))
    print(f"{f}: colour-fav {m(fav,'success')*100:.1f}% anti {m(anti,'success')*100:.1f}% | present {m(rows,'present_every_frame'):.2f} noextra {m(rows,'no_extra_objects'):.2f} | " + " ".join(f"{r['success']*100:.0f}" for r in rows))
