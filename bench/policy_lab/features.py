"""Reuse probability and reuse gap of KV-block references by feature (policy_lab, round two).

usage: python3 features.py [trace.jsonl]   (default: the bundled Mooncake trace)
Prints P(reused later) and gap quartiles per reference class, then, for first sightings deep in
fresh requests (the dominant class), P(reused) by request length, depth, new blocks, output length.
"""
import sys
import json, collections
PATH = sys.argv[1] if len(sys.argv) > 1 else "../../data/traces/mooncake/conversation_trace.jsonl"
R=[json.loads(l)['hash_ids'] for l in open(PATH)]
# reference stream with request index
nxt={}  # compute next ref position per (ref index)
refs=[];reqof=[]
for i,h in enumerate(R):
  for x in h: refs.append(x); reqof.append(i)
N=len(refs)
nextpos=[None]*N; last={}
for p in range(N-1,-1,-1):
  x=refs[p]; nextpos[p]=last.get(x); last[x]=p
seen=collections.Counter()
stats=collections.defaultdict(lambda:[0,0,[]])  # feature -> [n, reused, gaps]
p=0
for i,h in enumerate(R):
  k=0
  while k<len(h) and seen[h[k]]>0: k+=1
  cont = k>=2
  n=len(h)
  for j,x in enumerate(h):
    f=seen[x]
    fromend=n-1-j
    fe = 'last' if fromend==0 else ('2nd' if fromend==1 else 'deep')
    key=(min(f,3), 'cont' if cont else 'fresh', fe if f==0 else '-')
    s=stats[key]; s[0]+=1
    if nextpos[p] is not None:
      s[1]+=1; s[2].append(nextpos[p]-p)
    p+=1
  for x in h: seen[x]+=1
for key in sorted(stats):
  n,r,g=stats[key]; g.sort()
  med=g[len(g)//2] if g else 0; q25=g[len(g)//4] if g else 0; q75=g[3*len(g)//4] if g else 0
  print(key, 'n',n,'P(reuse) %.3f'%(r/n), 'gap q25/med/q75',q25,med,q75)

# ---- first sightings deep in fresh requests, by request feature ----
R=[json.loads(l) for l in open(PATH)]
H=[r['hash_ids'] for r in R]
future=collections.Counter()
for h in H: future.update(h)
seen=collections.Counter()
by=collections.defaultdict(lambda:[0,0])
for r,h in zip(R,H):
  for x in h: future[x]-=1
  n=len(h); cont=n>=2 and seen[h[1]]>0
  newn=sum(1 for x in h if seen[x]==0)
  for j,x in enumerate(h):
    if seen[x]==0 and not cont and n-1-j>=2:
      for key in [('len',min(n//8,8)),('depth',min(j//8,8)),('outlen',min(r['output_length']//200,6)),('newn',min(newn//8,8)),('lenmod', (n*512-r['input_length'])//128)]:
        s=by[key]; s[0]+=1; s[1]+= future[x]>0
  for x in h: seen[x]+=1
for k in sorted(by): print(k, by[k][0], '%.3f'%(by[k][1]/by[k][0]))
