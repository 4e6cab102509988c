import sys, torch
from findcli.conditional import load_conditional, policy_file_for
from findcli.pipeline import load_runtime
from findcli.evaluation import read_suite
_,_,pipe,_=load_runtime(None,"cpu")
ps=[p for p,_ in read_suite("runs/r4/fold_judged.txt")]
a,ma=load_conditional(sys.argv[1])
for f in sys.argv[2:]:
    b,mb=load_conditional(f)
    dm=[];cs=[];sa=[];sb=[]
    for p in ps:
        pa=policy_file_for(a,ma,pipe,p).policy; pb=policy_file_for(b,mb,pipe,p).policy
        dm.append((pb.mu-pa.mu).norm().item()/pa.mu.numel()**.5); cs.append(torch.nn.functional.cosine_similarity(pa.mu,pb.mu,dim=0).item())
        sa.append(pa.log_sigma.exp().mean().item()); sb.append(pb.log_sigma.exp().mean().item())
    n=len(ps)
    print(f, f"rms dmu {sum(dm)/n:.3f} cos {sum(cs)/n:.3f} sigma {sum(sa)/n:.3f}->{sum(sb)/n:.3f} |mu| {pa.mu.norm().item()/pa.mu.numel()**.5:.3f}")
