// candidate policies
static vector<char> g_reused_later;
static u32 g_fcap = 1u << 30;
struct LRUNoTail : LRU {
  int mode;
  LRUNoTail(int m) : mode(m) {}
  string name() const override { return "lru-notail"; }
  void store(const vector<int>& h, const vector<int>& miss) override {
    for (int x : miss) {
      if (mode == 0 && x == h.back()) continue;
      if (mode == 1 && !g_reused_later[x]) continue;
      insert(x);
    }
  }
};
struct ARCNoTail : ARC {
  string name() const override { return "arc-notail"; }
  void store(const vector<int>& h, const vector<int>& miss) override {
    vector<int> m2;
    for (int x : miss)
      if (x != h.back()) m2.push_back(x);
    ARC::store(h, m2);
  }
};

// ================= LHD-lite: per-class LRU lists, evict the class tail with least hit density
// =================
struct LHDLite : Policy {
  static constexpr int RB = 4;  // refcount buckets 1,2,3,4+
  int NC;
  bool useTail, useGhost, admitCtl;
  double decay;
  int GHOSTMUL;
  static constexpr int B = 64;
  unique_ptr<Lists> L;  // lists 0..NC-1 = classes; list NC = ghost FIFO
  vector<u32> last;
  vector<uint16_t> refs;
  vector<uint8_t> cls;  // per resident slot (and ghost: refs)
  vector<array<double, B>> H, E, HD;
  u64 now = 0, nextRecalc = 0, period = 0;
  size_t ghostCap = 0;
  LHDLite(bool tail, bool ghost, bool admit, double d = 0.9, int gm = 1)
      : useTail(tail), useGhost(ghost), admitCtl(admit), decay(d), GHOSTMUL(gm) {
    NC = RB * (tail ? 2 : 1);
  }
  string name() const override { return "lhd"; }
  void init(int n, size_t c, Ctx* cx) override {
    Policy::init(n, c, cx);
    L = make_unique<Lists>(n, NC + 1);
    last.assign(n, 0);
    refs.assign(n, 0);
    cls.assign(n, 0);
    H.assign(NC, {});
    E.assign(NC, {});
    HD.assign(NC, {});
    for (auto& a : HD)
      a.fill(0);
    period     = max<u64>(1024, c / 2);
    nextRecalc = period;
    ghostCap   = useGhost ? GHOSTMUL * c : 0;
    resident   = 0;
  }
  size_t resident = 0;
  bool has(int x) const override {
    int w = L->in(x);
    return w >= 0 && w < NC;
  }
  size_t used() const override { return resident; }
  static int ageBucket(u64 a) {
    if (a < 16) return 0;
    int b = int(4.0 * log2(double(a) / 16.0)) + 1;
    return min(b, B - 1);
  }
  static double bucketAge(int b) { return b == 0 ? 8.0 : 16.0 * pow(2.0, (b - 0.5) / 4.0); }
  static double bucketW(int b) {
    return b == 0 ? 16.0 : 16.0 * (pow(2.0, b / 4.0) - pow(2.0, (b - 1) / 4.0));
  }
  int classOf(int r, bool tail) const {
    int rb = min(r, RB) - 1;
    return useTail ? rb * 2 + (tail ? 1 : 0) : rb;
  }
  void recalc() {
    for (int c = 0; c < NC; ++c) {
      double hitsAbove = 0, eventsAbove = 0, life = 0;
      for (int b = B - 1; b >= 0; --b) {
        life += eventsAbove * bucketW(b) + (H[c][b] + E[c][b]) * bucketW(b) * 0.5;
        eventsAbove += H[c][b] + E[c][b];
        hitsAbove += H[c][b];
        HD[c][b] = life > 0 ? hitsAbove / life : 0;
      }
      for (int b = 0; b < B; ++b) {
        H[c][b] *= decay;
        E[c][b] *= decay;
      }
    }
  }
  void ghostAdd(int x) {
    if (!ghostCap) {
      refs[x] = 0;
      return;
    }
    L->mru(NC, x);
    if (L->size(NC) > ghostCap) {
      int y = L->first(NC);
      L->unlink(y);
      refs[y] = 0;
    }
  }
  void touch(const vector<int>& h) override {
    for (int i = (int)h.size() - 1; i >= 0; --i) {
      int x = h[i];
      int w = L->in(x);
      ++now;
      bool tail = (i == (int)h.size() - 1);
      if (w >= 0 && w < NC) {
        H[w][ageBucket(now - last[x])] += 1;
        if (refs[x] < 65535) ++refs[x];
        last[x] = (u32)now;
        int c   = classOf(refs[x], tail);
        cls[x]  = c;
        L->mru(c, x);
      } else {
        if (w == NC)
          L->unlink(x);
        else
          refs[x] = 0;
        if (refs[x] < 65535) ++refs[x];
        cls[x]  = classOf(refs[x], tail);
        last[x] = (u32)now;
      }
    }
    if (now >= nextRecalc) {
      recalc();
      nextRecalc = now + period;
    }
  }
  // choose victim: min hit density among class tails (skip protected)
  int pickVictim(double& hd) {
    int best   = -1;
    double bhd = 1e300;
    u64 bage   = 0;
    for (int c = 0; c < NC; ++c) {
      int x = L->first(c);
      while (x >= 0 && ctx->prot(x))
        x = L->next(x);
      if (x < 0) continue;
      u64 age  = now - last[x];
      double d = HD[c][ageBucket(age)];
      if (d < bhd || (d == bhd && age > bage)) {
        best = x;
        bhd  = d;
        bage = age;
      }
    }
    hd = bhd;
    return best;
  }
  void evict(int v) {
    int c = L->in(v);
    E[c][ageBucket(now - last[v])] += 1;
    L->unlink(v);
    --resident;
    ghostAdd(v);
  }
  void store(const vector<int>& h, const vector<int>& miss) override {
    for (int x : miss) {
      int c = cls[x];
      if (resident >= cap) {
        double vhd;
        int v = pickVictim(vhd);
        if (v < 0) {
          ghostAdd(x);
          continue;
        }
        bool explore =
            ((u64(x) * 0x9E3779B97F4A7C15ull) >> 59) == 0;  // 1/32 sample always admitted
        if (admitCtl && !explore && HD[c][0] < vhd) {
          ghostAdd(x);
          continue;
        }
        evict(v);
      }
      L->mru(c, x);
      ++resident;
      last[x] = (u32)now;
    }
  }
};

// ================= LFU-DA / GDSF-style: priority = L + f, evict min; f from bounded history
// =================
struct LFUDA : Policy {
  int GM;
  bool noTail;
  double fw;
  u32 agemin = 0;
  unique_ptr<Lists> G;
  vector<u32> f;
  vector<double> pri;
  vector<char> in;
  size_t n  = 0;
  double Lv = 0;
  u64 seq   = 0;
  set<tuple<double, u64, int>> pq;
  vector<u64> sq;
  LFUDA(int gm, bool nt, double w = 1.0) : GM(gm), noTail(nt), fw(w) {}
  string name() const override { return "lfuda"; }
  void init(int N_, size_t c, Ctx* cx) override {
    Policy::init(N_, c, cx);
    G = make_unique<Lists>(N_, 1);
    f.assign(N_, 0);
    pri.assign(N_, 0);
    in.assign(N_, 0);
    sq.assign(N_, 0);
  }
  bool has(int x) const override { return in[x]; }
  size_t used() const override { return n; }
  void setp(int x, double p) {
    if (in[x]) pq.erase({pri[x], sq[x], x});
    pri[x] = p;
    sq[x]  = ++seq;
    pq.insert({p, sq[x], x});
  }
  void touch(const vector<int>& h) override {
    for (int i = (int)h.size() - 1; i >= 0; --i) {
      int x = h[i];
      if (!in[x]) {
        if (G->in(x) == 0)
          G->unlink(x);
        else
          f[x] = 0;
      }
      ++f[x];
      if (in[x]) setp(x, Lv + fw * min(f[x], g_fcap));
    }
  }
  void ghost(int x) {
    if (!GM) {
      f[x] = 0;
      return;
    }
    G->mru(0, x);
    if (G->size(0) > size_t(GM) * cap) {
      int y = G->first(0);
      G->unlink(y);
      f[y] = 0;
    }
  }
  void store(const vector<int>& h, const vector<int>& miss) override {
    for (int x : miss) {
      if (noTail && x == h.back()) {
        ghost(x);
        continue;
      }
      if (n >= cap) {
        auto it = pq.begin();
        while (it != pq.end() && ctx->prot(get<2>(*it)))
          ++it;
        if (it == pq.end()) {
          ghost(x);
          continue;
        }
        int v = get<2>(*it);
        if (f[v] >= agemin) Lv = max(Lv, get<0>(*it));
        pq.erase(it);
        in[v] = 0;
        --n;
        ghost(v);
      }
      in[x] = 1;
      ++n;
      pri[x] = Lv + fw * f[x];
      sq[x]  = ++seq;
      pq.insert({pri[x], sq[x], x});
    }
  }
};

// LFU-DA with frequency from a count-min sketch (bounded memory), tail exclusion
struct SketchSK {
  vector<uint16_t> t;
  u64 mask = 0, adds = 0, period = 0;
  int cmax;
  void init(size_t w0, u64 per, int cm) {
    size_t w = 16;
    while (w < w0)
      w <<= 1;
    t.assign(4 * w, 0);
    mask   = w - 1;
    period = per;
    cmax   = cm;
  }
  static u64 mix(u64 x, u64 s) {
    x += s * 0x9E3779B97F4A7C15ull;
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 29;
    x *= 0x94D049BB133111EBull;
    return x ^ (x >> 32);
  }
  int est(int k) const {
    int m = cmax;
    for (int r = 0; r < 4; ++r)
      m = min<int>(m, t[r * (mask + 1) + (mix(k, r + 1) & mask)]);
    return m;
  }
  void inc(int k) {
    int m = est(k);
    if (m < cmax)
      for (int r = 0; r < 4; ++r) {
        auto& c = t[r * (mask + 1) + (mix(k, r + 1) & mask)];
        if (c == m) ++c;
      }
    if (++adds >= period) {
      for (auto& c : t)
        c >>= 1;
      adds /= 2;
    }
  }
};
struct LFUDASk : LFUDA {
  SketchSK sk;
  double wm, pm;
  int cm;
  LFUDASk(double w, double p, int c) : LFUDA(0, true), wm(w), pm(p), cm(c) {}
  void init(int N_, size_t c, Ctx* cx) override {
    LFUDA::init(N_, c, cx);
    sk.init(size_t(wm * c), u64(pm * c), cm);
  }
  void touch(const vector<int>& h) override {
    for (int i = (int)h.size() - 1; i >= 0; --i) {
      int x = h[i];
      sk.inc(x);
      f[x] = sk.est(x);
      if (in[x]) setp(x, Lv + f[x]);
    }
  }
  void ghost(int) {}
  void store(const vector<int>& h, const vector<int>& miss) override {
    for (int x : miss) {
      if (x == h.back()) continue;
      if (n >= cap) {
        auto it = pq.begin();
        while (it != pq.end() && ctx->prot(get<2>(*it)))
          ++it;
        if (it == pq.end()) continue;
        int v = get<2>(*it);
        Lv    = get<0>(*it);
        pq.erase(it);
        in[v] = 0;
        --n;
      }
      in[x] = 1;
      ++n;
      pri[x] = Lv + f[x];
      sq[x]  = ++seq;
      pq.insert({pri[x], sq[x], x});
    }
  }
};

// ====== PLFU: LFU-DA (priority = L + f) + bounded history ghost + learned position-class admission
// ====== class of a missing block = its position from the end of the request (0 = last, 1, 2+).
struct PLFU : LFUDA {
  vector<uint8_t> icls, ihit;
  double ins[3] = {0, 0, 0}, hit[3] = {0, 0, 0};
  u64 nins = 0;
  PLFU(int gm) : LFUDA(gm, false) {}
  string name() const override { return "plfu"; }
  void init(int N_, size_t c, Ctx* cx) override {
    LFUDA::init(N_, c, cx);
    icls.assign(N_, 0);
    ihit.assign(N_, 0);
    for (int i = 0; i < 3; ++i)
      ins[i] = hit[i] = 0;
    nins = 0;
  }
  void touch(const vector<int>& h) override {
    for (int x : h)
      if (in[x] && !ihit[x]) {
        ihit[x] = 1;
        hit[icls[x]] += 1;
      }
    LFUDA::touch(h);
  }
  bool admit(int c, int x) const {
    if (c == 2) return true;
    bool explore = ((u64(x) * 0x9E3779B97F4A7C15ull) >> 60) == 0;  // 1/16 of hashes always admitted
    if (explore || ins[c] < 32) return true;
    double rc = hit[c] / ins[c], rb = (hit[2] + 1) / (ins[2] + 1);
    return rc >= 0.25 * rb;
  }
  void store(const vector<int>& h, const vector<int>& miss) override {
    int nh = (int)h.size();
    unordered_map<int, int> pos;  // position from end (sim only)
    for (int i = 0; i < nh; ++i)
      pos[h[i]] = min(nh - 1 - i, 2);
    for (int x : miss) {
      int c = pos[x];
      if (!admit(c, x)) {
        ghost(x);
        continue;
      }
      if (n >= cap) {
        auto it = pq.begin();
        while (it != pq.end() && ctx->prot(get<2>(*it)))
          ++it;
        if (it == pq.end()) {
          ghost(x);
          continue;
        }
        int v = get<2>(*it);
        Lv    = get<0>(*it);
        pq.erase(it);
        in[v] = 0;
        --n;
        ghost(v);
      }
      in[x] = 1;
      ++n;
      pri[x] = Lv + min(f[x], g_fcap);
      sq[x]  = ++seq;
      pq.insert({pri[x], sq[x], x});
      icls[x] = c;
      ihit[x] = 0;
      ins[c] += 1;
      if (++nins >= cap) {
        nins = 0;
        for (int i = 0; i < 3; ++i) {
          ins[i] *= 0.5;
          hit[i] *= 0.5;
        }
      }
    }
  }
};
#include "candidates2.hpp"
static unique_ptr<Policy> make_candidate(const string& n) {
  if (n.rfind("duel", 0) == 0) {  // duel:dss:margin
    int d    = 4;
    double m = 16;
    sscanf(n.c_str(), "duel:%d:%lf", &d, &m);
    return make_unique<DuelKHD>(d, m);
  }
  if (n.rfind("khd", 0) == 0) {  // khd:H:shift:adm:decay
    double h = 16, dm = 1, w = 1, pp = 1;
    int ss = 4, adm = 1, ex = 0, nk = 0;
    sscanf(n.c_str(), "khd:%lf:%d:%d:%lf:%d:%d:%lf:%lf", &h, &ss, &adm, &dm, &ex, &nk, &w, &pp);
    auto p    = make_unique<KHD>(h, ss, adm != 0, dm);
    p->exactF = ex;
    p->noKM   = nk;
    p->skW    = w;
    p->skP    = pp;
    return p;
  }
  if (n.rfind("ohd", 0) == 0) {  // ohd:H:adm  oracle statistics, fixed M = H * cap
    double h = 16;
    int adm = 1, v = 0;
    sscanf(n.c_str(), "ohd:%lf:%d:%d", &h, &adm, &v);
    auto p     = make_unique<HD>(h, 0, adm != 0);
    p->oracle  = true;
    p->variant = v;
    return p;
  }
  if (n.rfind("hd", 0) == 0) {  // hd:H:shift:adm
    double h = 16;
    int ss = 0, adm = 1;
    sscanf(n.c_str(), "hd:%lf:%d:%d", &h, &ss, &adm);
    return make_unique<HD>(h, ss, adm != 0);
  }
  if (n == "lrunotail") return make_unique<LRUNoTail>(0);
  if (n == "arcnotail") return make_unique<ARCNoTail>();
  if (n == "lhd") return make_unique<LHDLite>(true, true, true);
  if (n == "lhd-noadm") return make_unique<LHDLite>(true, true, false);
  if (n == "lhd-noghost") return make_unique<LHDLite>(true, false, true);
  if (n == "lhd-notail") return make_unique<LHDLite>(false, true, true);
  if (n == "lhd-g4") return make_unique<LHDLite>(true, true, true, 0.9, 4);
  if (n == "lfuda") return make_unique<LFUDA>(4, false);
  if (n == "lfuda-nt") return make_unique<LFUDA>(4, true);
  if (n == "lfuda-g1") return make_unique<LFUDA>(1, true);
  if (n == "lfuda-g0") return make_unique<LFUDA>(0, true);
  if (n.rfind("lfudaw", 0) == 0) return make_unique<LFUDA>(4, true, atof(n.c_str() + 6));
  if (n.rfind("lfsk", 0) == 0) {
    double a, b;
    int c;
    sscanf(n.c_str() + 4, "%lf_%lf_%d", &a, &b, &c);
    return make_unique<LFUDASk>(a, b, c);
  }
  if (n.rfind("lfa", 0) == 0) {
    auto p    = make_unique<LFUDA>(atoi(n.c_str() + 3), true);
    p->agemin = atoi(n.c_str() + n.find('_') + 1);
    return p;
  }
  if (n.rfind("plfuc", 0) == 0) {
    g_fcap = atoi(n.c_str() + 5);
    return make_unique<PLFU>(4);
  }
  if (n == "plfu") return make_unique<PLFU>(4);
  if (n == "plfu-g8") return make_unique<PLFU>(8);
  return nullptr;
}
