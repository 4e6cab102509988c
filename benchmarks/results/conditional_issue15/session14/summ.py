import json, sys
CEIL, BASE = None, None
for f in sys.argv[1:]:
    d = json.load(open(f))
    r = d["results"]
    def rate(arm, cat=None):
        xs = [x[arm]["success_rate"] for x in r if cat is None or x["category"] == cat]
        return 100 * sum(xs) / len(xs)
    print(f"{f}: base {rate('baseline'):.1f} policy {rate('policy'):.1f} (position {rate('policy','position'):.1f} / counting {rate('policy','counting'):.1f}) reward {sum(x['policy']['mean_reward'] for x in r)/len(r):.3f}")
