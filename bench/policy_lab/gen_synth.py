# Synthetic KV block traces with prefix-chained ids (dense), one request per line.
# S1: Zipf system prompts + multi-turn conversations extending their own prefix + one-shot documents;
#     the last (partial) block of every request is unique (Mooncake-style hashing).
# S2: full blocks only (vLLM-style: partial blocks never hashed): Zipf-popular RAG documents behind a shared
#     system prompt with unique questions, plus long agent sessions with many short-gap turns.
import random, sys, heapq
def build(kind, seed, nreq):
    rnd = random.Random(seed); ids = {}
    def bid(parent, key):
        return ids.setdefault((parent, key), len(ids))
    def chain(contents):           # contents: list of block content keys -> chained ids
        out = []; p = -1
        for c in contents: p = bid(p, c); out.append(p)
        return out
    def zipf(n, s):
        w = [1 / (i + 1) ** s for i in range(n)]; tot = sum(w); cum = []; a = 0
        for x in w: a += x / tot; cum.append(a)
        return lambda: min(n - 1, next(i for i, c in enumerate(cum) if c >= rnd.random()) if False else bisect(cum, rnd.random()))
    import bisect as B
    def bisect(cum, r): return B.bisect_left(cum, r)
    events = []; t = 0.0; uid = [0]
    def uniq():
        uid[0] += 1; return ('u', uid[0])
    if kind == 1:
        sysz = zipf(200, 1.1); syslen = [rnd.randint(1, 6) for _ in range(200)]
        while len(events) < nreq:
            t += rnd.expovariate(1.0); r = rnd.random()
            sp = sysz(); pre = [('sys', sp, j) for j in range(syslen[sp])]
            if r < 0.35:   # one-shot document
                events.append((t, pre + [uniq() for _ in range(rnd.randint(10, 80))] + [uniq()]))
            else:          # conversation
                conv = pre + [uniq() for _ in range(rnd.randint(1, 12))]
                tt = t; turns = 1 + int(rnd.expovariate(1 / 3.0))
                for k in range(turns):
                    events.append((tt, conv + [uniq()]))           # partial tail block: unique
                    conv = conv + [uniq() for _ in range(rnd.randint(1, 4))]
                    tt += rnd.expovariate(1 / 400.0)
    else:
        docz = zipf(3000, 0.9); doclen = [rnd.randint(8, 40) for _ in range(3000)]
        sysp = [('sys', 0, j) for j in range(4)]
        while len(events) < nreq:
            t += rnd.expovariate(1.0); r = rnd.random()
            if r < 0.6:    # RAG: system + popular doc + unique question (full blocks only)
                d = docz(); events.append((t, sysp + [('doc', d, j) for j in range(doclen[d])] + [uniq() for _ in range(rnd.randint(0, 2))]))
            else:          # agent session
                conv = sysp + [uniq() for _ in range(rnd.randint(2, 20))]; tt = t
                for k in range(1 + int(rnd.expovariate(1 / 12.0))):
                    events.append((tt, list(conv)))
                    conv = conv + [uniq() for _ in range(rnd.randint(1, 6))]
                    if len(conv) > 200: break
                    tt += rnd.expovariate(1 / 60.0)
    events.sort(key=lambda e: e[0])
    return [chain(c) for _, c in events[:nreq]]
for kind in (1, 2):
    reqs = build(kind, 42 + kind, 15000)
    with open(f'{sys.argv[1]}/synth{kind}.txt', 'w') as o:
        for r in reqs: o.write(' '.join(map(str, r)) + '\n')
    print('synth', kind, 'requests', len(reqs), 'refs', sum(map(len, reqs)), 'distinct', len({x for r in reqs for x in r}))
