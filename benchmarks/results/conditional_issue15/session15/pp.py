"""per-prompt success of several eval JSONs side by side: pp.py A.json B.json ..."""
import json
import sys
rs = [json.load(open(f)) for f in sys.argv[1:]]
print("prompt".ljust(48), "base", *[f.split('/')[-1][:10].rjust(10) for f in sys.argv[1:]])
for i, r0 in enumerate(rs[0]["results"]):
    print(r0["prompt"][:48].ljust(48), f"{r0['baseline']['success_rate']*100:4.0f}", *[f"{r['results'][i]['policy']['success_rate']*100:10.1f}" for r in rs])
for cat in ("position", "counting", "overall"):
    print(cat.ljust(48), f"{rs[0]['summary'][cat]['baseline']['success_rate']*100:4.1f}", *[f"{r['summary'][cat]['policy']['success_rate']*100:10.1f}" for r in rs])
