// policy_lab: offline KV-block cache policy simulator (see README.md here).
// g++ -O2 -std=c++20 -o sim sim.cpp
#include <bits/stdc++.h>
using namespace std;
using u32 = uint32_t;
using u64 = uint64_t;

// ---------------- trace ----------------
struct Trace {
  vector<vector<int>> req;
  int nid     = 0;
  size_t refs = 0;
};
static Trace load(const string& path) {
  Trace t;
  ifstream f(path);
  string line;
  while (getline(f, line)) {
    vector<int> v;
    const char* p = line.c_str();
    while (*p) {
      while (*p == ' ')
        ++p;
      if (!*p) break;
      int x = 0;
      while (*p >= '0' && *p <= '9')
        x = x * 10 + (*p++ - '0');
      v.push_back(x);
      t.nid = max(t.nid, x + 1);
    }
    t.refs += v.size();
    t.req.push_back(std::move(v));
  }
  return t;
}

// ---------------- intrusive lists over ids ----------------
struct Lists {
  int N, K;
  vector<int> prv, nxt;
  vector<int8_t> where;
  vector<size_t> sz;
  Lists(int n, int k) : N(n), K(k), prv(n + k), nxt(n + k), where(n + k, -1), sz(k, 0) {
    for (int l = 0; l < k; ++l)
      prv[n + l] = nxt[n + l] = n + l;
  }
  int in(int x) const { return where[x]; }
  void unlink(int x) {
    int l = where[x];
    if (l < 0) return;
    nxt[prv[x]] = nxt[x];
    prv[nxt[x]] = prv[x];
    where[x]    = -1;
    --sz[l];
  }
  void mru(int l, int x) {
    unlink(x);
    int s       = N + l;
    prv[x]      = prv[s];
    nxt[x]      = s;
    nxt[prv[s]] = x;
    prv[s]      = x;
    where[x]    = l;
    ++sz[l];
  }
  void lru_end(int l, int x) {
    unlink(x);
    int s       = N + l;
    nxt[x]      = nxt[s];
    prv[x]      = s;
    prv[nxt[s]] = x;
    nxt[s]      = x;
    where[x]    = l;
    ++sz[l];
  }
  int first(int l) const {
    int s = N + l;
    return nxt[s] == s ? -1 : nxt[s];
  }  // LRU end
  int next(int x) const {
    int y = nxt[x];
    return y >= N ? -1 : y;
  }  // towards MRU
  size_t size(int l) const { return sz[l]; }
};

// ---------------- policy interface ----------------
struct Ctx {
  vector<int> stamp;
  int cur = 0;
  bool prot(int x) const { return stamp[x] == cur; }
};
struct Policy {
  Ctx* ctx   = nullptr;
  size_t cap = 0;
  int N      = 0;
  virtual ~Policy() {}
  virtual string name() const = 0;
  virtual void init(int n, size_t c, Ctx* cx) {
    N   = n;
    cap = c;
    ctx = cx;
  }
  virtual bool has(int x) const            = 0;
  virtual void touch(const vector<int>& h) = 0;  // all hashes, after lookup
  virtual void store(const vector<int>& h, const vector<int>& miss) = 0;  // may skip (admission)
  virtual size_t used() const                                       = 0;
};

// ---------------- count-min sketch (4-bit-ish, halving reset) ----------------
struct Sketch {
  vector<uint8_t> t;
  u64 mask = 0;
  u64 adds = 0, period = 0;
  void init(size_t cap, double periodMul = 10.0) {
    size_t w = 16;
    while (w < cap)
      w <<= 1;
    t.assign(4 * w, 0);
    mask   = w - 1;
    period = max<u64>(64, u64(periodMul * cap));
    adds   = 0;
  }
  static u64 mix(u64 x, u64 s) {
    x += s * 0x9E3779B97F4A7C15ull;
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 29;
    x *= 0x94D049BB133111EBull;
    return x ^ (x >> 32);
  }
  int est(int key) const {
    int m = 15;
    for (int r = 0; r < 4; ++r)
      m = min<int>(m, t[r * (mask + 1) + (mix(key, r + 1) & mask)]);
    return m;
  }
  void inc(int key) {
    int m = est(key);
    if (m < 15)
      for (int r = 0; r < 4; ++r) {
        auto& c = t[r * (mask + 1) + (mix(key, r + 1) & mask)];
        if (c == m) ++c;
      }
    if (++adds >= period) {
      for (auto& c : t)
        c >>= 1;
      adds /= 2;
    }
  }
};

// ================= LRU =================
struct LRU : Policy {
  unique_ptr<Lists> L;
  string name() const override { return "LRU"; }
  void init(int n, size_t c, Ctx* cx) override {
    Policy::init(n, c, cx);
    L = make_unique<Lists>(n, 1);
  }
  bool has(int x) const override { return L->in(x) == 0; }
  size_t used() const override { return L->size(0); }
  void touch(const vector<int>& h) override {
    for (int i = (int)h.size() - 1; i >= 0; --i)
      if (has(h[i])) L->mru(0, h[i]);
  }
  bool evict_one() {
    for (int x = L->first(0); x >= 0; x = L->next(x))
      if (!ctx->prot(x)) {
        L->unlink(x);
        return true;
      }
    return false;
  }
  void insert(int x) {
    if (L->size(0) >= cap && !evict_one()) return;
    L->mru(0, x);
  }
  void store(const vector<int>&, const vector<int>& miss) override {
    for (int x : miss)
      insert(x);
  }
};

// ================= vLLM reuse filter + LRU =================
struct FilterLRU : LRU {
  // bounded LRU of hashes -> lookup count
  unique_ptr<Lists> F;
  vector<uint16_t> cnt;
  size_t fcap = 65536;
  string name() const override { return "filter+LRU"; }
  void init(int n, size_t c, Ctx* cx) override {
    LRU::init(n, c, cx);
    F = make_unique<Lists>(n, 1);
    cnt.assign(n, 0);
  }
  void touch(const vector<int>& h) override {
    LRU::touch(h);
    for (int x : h) {
      if (F->in(x) != 0) {
        cnt[x] = 0;
        if (F->size(0) >= fcap) {
          int y = F->first(0);
          F->unlink(y);
          cnt[y] = 0;
        }
      }
      F->mru(0, x);
      if (cnt[x] < 65535) ++cnt[x];
    }
  }
  void store(const vector<int>&, const vector<int>& miss) override {
    for (int x : miss)
      if (cnt[x] >= 2) insert(x);
  }
};

// ================= ARC (Megiddo-Modha) =================
struct ARC : Policy {
  enum { T1, T2, B1, B2 };
  unique_ptr<Lists> L;
  double p = 0;
  string name() const override { return "ARC"; }
  void init(int n, size_t c, Ctx* cx) override {
    Policy::init(n, c, cx);
    L = make_unique<Lists>(n, 4);
    p = 0;
  }
  bool has(int x) const override {
    int w = L->in(x);
    return w == T1 || w == T2;
  }
  size_t used() const override { return L->size(T1) + L->size(T2); }
  void touch(const vector<int>& h) override {
    for (int i = (int)h.size() - 1; i >= 0; --i) {
      int x = h[i];
      int w = L->in(x);
      if (w == T1 || w == T2)
        L->mru(T2, x);
      else if (w == B1)
        p = min<double>(cap, p + max(1.0, double(L->size(B2)) / L->size(B1)));
      else if (w == B2)
        p = max(0.0, p - max(1.0, double(L->size(B1)) / L->size(B2)));
    }
  }
  int victim(int l) {
    for (int x = L->first(l); x >= 0; x = L->next(x))
      if (!ctx->prot(x)) return x;
    return -1;
  }
  bool replace(bool inB2) {
    size_t t1 = L->size(T1);
    int v     = -1;
    int to    = B1;
    if (t1 >= 1 && (t1 > p || (inB2 && t1 == (size_t)p))) v = victim(T1);
    if (v < 0) {
      v  = victim(T2);
      to = B2;
    }
    if (v < 0) {
      v  = victim(T1);
      to = B1;
    }
    if (v < 0) return false;
    L->mru(to, v);
    return true;
  }
  void store(const vector<int>&, const vector<int>& miss) override {
    for (int x : miss) {
      int w = L->in(x);
      if (w == B1 || w == B2) {
        if (used() >= cap && !replace(w == B2)) continue;
        L->mru(T2, x);
        continue;
      }
      size_t l1 = L->size(T1) + L->size(B1);
      if (l1 >= cap) {
        if (L->size(T1) < cap) {
          L->unlink(L->first(B1));
          if (used() >= cap && !replace(false)) continue;
        } else {
          int v = victim(T1);
          if (v < 0) continue;
          L->unlink(v);
        }
      } else {
        size_t tot = l1 + L->size(T2) + L->size(B2);
        if (tot >= cap) {
          if (tot >= 2 * cap && L->size(B2)) L->unlink(L->first(B2));
          if (used() >= cap && !replace(false)) continue;
        }
      }
      L->mru(T1, x);
    }
  }
};

// ================= S3-FIFO =================
struct S3FIFO : Policy {
  enum { S, M, G };
  unique_ptr<Lists> L;
  vector<uint8_t> f;
  size_t scap, gcap;
  string name() const override { return "S3-FIFO"; }
  void init(int n, size_t c, Ctx* cx) override {
    Policy::init(n, c, cx);
    L = make_unique<Lists>(n, 3);
    f.assign(n, 0);
    scap = max<size_t>(1, c / 10);
    gcap = c - scap;
  }
  bool has(int x) const override {
    int w = L->in(x);
    return w == S || w == M;
  }
  size_t used() const override { return L->size(S) + L->size(M); }
  void touch(const vector<int>& h) override {
    for (int x : h)
      if (has(x) && f[x] < 3) ++f[x];
  }
  void ghost(int x) {
    L->mru(G, x);
    if (L->size(G) > gcap) L->unlink(L->first(G));
  }
  bool evictM() {
    for (int guard = 0; guard < 4 * (int)cap + 8; ++guard) {
      int x = L->first(M);
      if (x < 0) return false;
      if (f[x] > 0 || ctx->prot(x)) {
        if (f[x]) --f[x];
        L->mru(M, x);
        continue;
      }
      L->unlink(x);
      return true;
    }
    return false;
  }
  bool evictS() {
    for (int guard = 0; guard < 4 * (int)cap + 8; ++guard) {
      int x = L->first(S);
      if (x < 0) return false;
      if (ctx->prot(x)) {
        L->mru(S, x);
        continue;
      }
      if (f[x] > 1) {
        L->mru(M, x);
        f[x] = 0;
        if (L->size(M) > cap - scap) evictM();
        continue;
      }  // promotion; main may overflow transiently
      L->unlink(x);
      ghost(x);
      return true;
    }
    return false;
  }
  bool evict() {
    if (L->size(S) >= scap || L->size(M) == 0) {
      if (evictS()) return true;
    }
    if (used() < cap) return true;
    return evictM() || evictS();
  }
  void store(const vector<int>&, const vector<int>& miss) override {
    for (int x : miss) {
      while (used() >= cap)
        if (!evict()) break;
      if (used() >= cap) continue;
      f[x] = 0;
      if (L->in(x) == G)
        L->mru(M, x);
      else
        L->mru(S, x);
    }
  }
};

// ================= W-TinyLFU with hill-climbing window =================
struct WTinyLFU : Policy {
  enum { W, PB, PT };
  unique_ptr<Lists> L;
  Sketch sk;
  double wfrac;
  bool adaptive;
  size_t wcap, samples = 0, shits = 0;
  double prevRate = -1, step;
  int dir         = 1;
  WTinyLFU(double wf, bool ad) : wfrac(wf), adaptive(ad) {}
  string name() const override { return adaptive ? "W-TinyLFU(hc)" : "W-TinyLFU(1%)"; }
  void init(int n, size_t c, Ctx* cx) override {
    Policy::init(n, c, cx);
    L = make_unique<Lists>(n, 3);
    sk.init(c);
    wcap = max<size_t>(1, size_t(wfrac * c));
    step = 0.0625 * c;
  }
  bool has(int x) const override { return L->in(x) >= 0; }
  size_t used() const override { return L->size(W) + L->size(PB) + L->size(PT); }
  size_t mcap() const { return cap - wcap; }
  void touch(const vector<int>& h) override {
    for (int i = (int)h.size() - 1; i >= 0; --i) {
      int x = h[i];
      int w = L->in(x);
      sk.inc(x);
      if (adaptive) {
        ++samples;
        shits += w >= 0;
      }
      if (w == W)
        L->mru(W, x);
      else if (w == PB) {
        L->mru(PT, x);
        while (L->size(PT) > size_t(0.8 * mcap()))
          L->mru(PB, L->first(PT));
      } else if (w == PT)
        L->mru(PT, x);
    }
    if (adaptive && samples >= cap) climb();
  }
  void climb() {
    double rate = double(shits) / samples;
    samples = shits = 0;
    if (prevRate >= 0) {
      if (rate < prevRate) dir = -dir;
      if (fabs(rate - prevRate) > 0.05) step = 0.0625 * cap;
    }
    prevRate  = rate;
    double nw = double(wcap) + dir * step;
    step *= 0.98;
    wcap = (size_t)clamp(nw, 1.0, double(cap) - 1);
  }
  int first_unprot(int l) {
    for (int x = L->first(l); x >= 0; x = L->next(x))
      if (!ctx->prot(x)) return x;
    return -1;
  }
  void balance() {  // move window overflow into main with TinyLFU admission
    while (L->size(W) > wcap) {
      int cnd = first_unprot(W);
      if (cnd < 0) break;
      if (L->size(PB) + L->size(PT) < mcap()) {
        L->mru(PB, cnd);
        continue;
      }
      int v = first_unprot(PB);
      if (v < 0) v = first_unprot(PT);
      if (v < 0 || sk.est(cnd) <= sk.est(v)) {
        L->unlink(cnd);
      } else {
        L->unlink(v);
        L->mru(PB, cnd);
      }
    }
    while (used() > cap) {
      int v = first_unprot(PB);
      if (v < 0) v = first_unprot(PT);
      if (v < 0) v = first_unprot(W);
      if (v < 0) break;
      L->unlink(v);
    }
  }
  void store(const vector<int>&, const vector<int>& miss) override {
    for (int x : miss) {
      L->mru(W, x);
      if (used() > cap) balance();
    }
    balance();
  }
};

static const Trace* gTrace = nullptr;
#include "candidates.hpp"

// ---------------- driver ----------------
struct Res {
  double hit, pre;
};
static Res run(const Trace& t, Policy& P, size_t cap, size_t from = 0, size_t to = SIZE_MAX) {
  Ctx cx;
  cx.stamp.assign(t.nid, -1);
  P.init(t.nid, cap, &cx);
  size_t hits = 0, pre = 0, refs = 0;
  vector<int> miss;
  static vector<int> fcnt, lcls;
  fcnt.assign(t.nid, 0);
  lcls.assign(t.nid, 0);
  double rm[8] = {0};
  bool dbg2    = getenv("HDDBG2");
  to           = min(to, t.req.size());
  for (size_t r = from; r < to; ++r) {
    const auto& h = t.req[r];
    cx.cur        = (int)r;
    size_t k      = 0;
    bool pfx      = true;
    for (int x : h) {
      cx.stamp[x] = (int)r;
      bool in     = P.has(x);
      hits += in;
      if (pfx && in)
        ++k;
      else
        pfx = false;
    }
    pre += k;
    refs += h.size();
    if (dbg2) {
      int nh    = (int)h.size();
      bool cont = nh >= 2 && fcnt[h[1]] > 0;
      for (int i = 0; i < nh; ++i) {
        int x = h[i];
        if (fcnt[x] > 0 && !P.has(x)) rm[lcls[x]] += 1;
      }
      for (int i = 0; i < nh; ++i) {
        int x   = h[i];
        int fp  = fcnt[x];
        lcls[x] = fp == 0   ? (nh - 1 - i == 0   ? 0
                               : nh - 1 - i == 1 ? 1
                               : cont            ? 3
                                                 : 2)
                  : fp == 1 ? 4
                  : fp == 2 ? 5
                  : fp < 8  ? 6
                            : 7;
      }
      for (int x : h)
        ++fcnt[x];
    }
    P.touch(h);
    miss.clear();
    for (int x : h)
      if (!P.has(x)) miss.push_back(x);
    P.store(h, miss);
    if (P.used() > cap) {
      fprintf(stderr, "%s over capacity\n", P.name().c_str());
      exit(1);
    }
  }
  if (dbg2) {
    fprintf(stderr, "\n%s cap %zu reuse-misses by class:", P.name().c_str(), cap);
    for (double v : rm)
      fprintf(stderr, " %.0f", v);
    fprintf(stderr, "\n");
  }
  return {double(hits) / refs, double(pre) / refs};
}
static Res belady(const Trace& t, size_t cap, size_t from = 0, size_t to = SIZE_MAX) {
  to = min(to, t.req.size());
  vector<int> refs;
  vector<size_t> rstart;
  for (size_t r = from; r < to; ++r) {
    rstart.push_back(refs.size());
    refs.insert(refs.end(), t.req[r].begin(), t.req[r].end());
  }
  rstart.push_back(refs.size());
  const size_t NEV = SIZE_MAX;
  vector<size_t> nxt(refs.size());
  vector<size_t> last(t.nid, NEV);
  for (size_t i = refs.size(); i-- > 0;) {
    nxt[i]        = last[refs[i]];
    last[refs[i]] = i;
  }
  vector<size_t> res(t.nid, NEV);
  vector<char> in(t.nid, 0);
  size_t n = 0;
  priority_queue<pair<size_t, int>> pq;
  size_t hits = 0, pre = 0;
  for (size_t q = 0; q + 1 < rstart.size(); ++q) {
    bool pf = true;
    for (size_t i = rstart[q]; i < rstart[q + 1]; ++i) {
      if (pf && in[refs[i]])
        ++pre;
      else
        pf = false;
    }
    for (size_t i = rstart[q]; i < rstart[q + 1]; ++i) {
      int b     = refs[i];
      size_t nx = nxt[i];
      if (in[b]) {
        ++hits;
        res[b] = nx;
        pq.push({nx, b});
        continue;
      }
      if (nx == NEV) continue;
      if (n == cap) {
        while (true) {
          auto [u, c] = pq.top();
          if (in[c] && res[c] == u) break;
          pq.pop();
        }
        if (pq.top().first <= nx) continue;
        in[pq.top().second] = 0;
        pq.pop();
        --n;
      }
      in[b] = 1;
      ++n;
      res[b] = nx;
      pq.push({nx, b});
    }
  }
  return {double(hits) / refs.size(), double(pre) / refs.size()};
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: sim trace.txt [policies,comma] [slice:from:to] [caps%%...]\n");
    return 1;
  }
  Trace t     = load(argv[1]);
  gTrace      = &t;
  string sel  = argc > 2 ? argv[2] : "all";
  size_t from = 0, to = SIZE_MAX;
  if (argc > 3 && string(argv[3]) != "-") {
    double a, b;
    sscanf(argv[3], "%lf:%lf", &a, &b);
    from = size_t(a * t.req.size());
    to   = size_t(b * t.req.size());
  }
  vector<double> pcts = {1, 5, 10, 25};
  if (argc > 4) {
    pcts.clear();
    for (int i = 4; i < argc; ++i)
      pcts.push_back(atof(argv[i]));
  }
  // distinct ids within the slice define capacity
  vector<char> seen(t.nid, 0);
  size_t distinct = 0, refs = 0;
  for (size_t r = from; r < min(to, t.req.size()); ++r)
    for (int x : t.req[r]) {
      refs++;
      if (!seen[x]) {
        seen[x] = 1;
        ++distinct;
      }
    }
  printf("# %s requests %zu..%zu refs %zu distinct %zu\n",
         argv[1],
         from,
         min(to, t.req.size()),
         refs,
         distinct);
  auto make = [](const string& n) -> unique_ptr<Policy> {
    if (n == "lru") return make_unique<LRU>();
    if (n == "arc") return make_unique<ARC>();
    if (n == "filter") return make_unique<FilterLRU>();
    if (n == "s3") return make_unique<S3FIFO>();
    if (n == "wtlfu") return make_unique<WTinyLFU>(0.01, false);
    if (n == "wtlfuhc") return make_unique<WTinyLFU>(0.01, true);
    return make_candidate(n);
  };
  vector<string> names;
  {
    stringstream ss(sel == "all" ? "lru,arc,filter,wtlfu,wtlfuhc,s3,belady" : sel);
    string s;
    while (getline(ss, s, ','))
      names.push_back(s);
  }
  printf("%-16s", "policy");
  for (double p : pcts)
    printf(" | %5.1f%% hit  prefix", p);
  printf("\n");
  for (auto& n : names) {
    printf("%-16s", n.c_str());
    fflush(stdout);
    for (double p : pcts) {
      size_t cap = max<size_t>(1, size_t(llround(p * distinct / 100.0)));
      Res r;
      if (n == "belady")
        r = belady(t, cap, from, to);
      else {
        auto P = make(n);
        if (!P) {
          printf(" unknown");
          break;
        }
        r = run(t, *P, cap, from, to);
      }
      printf(" | %6.4f %6.4f", r.hit, r.pre);
      fflush(stdout);
    }
    printf("\n");
  }
}
