# Convert a KV trace (jsonl with hash_ids) to dense-id text: one request per line.
import json, sys
src, dst = sys.argv[1], sys.argv[2]
ids = {}
with open(src) as f, open(dst, 'w') as o:
    for line in f:
        r = json.loads(line)
        o.write(' '.join(str(ids.setdefault(h, len(ids))) for h in r['hash_ids']) + '\n')
print(dst, 'distinct', len(ids))
