// Hit-density policy with uncensored class statistics (policy_lab study, 2026-11-26 session 3).
// Classes at reference time; per-class LRU lists; evict the list head with the lowest
// expected hits per unit of cache time, estimated from reuse gaps observed for all (or sampled)
// blocks independently of residency, so evictions do not censor the estimates.
struct HD : Policy {
  static constexpr int NC = 40, NB = 72;
  int variant = 0;
  double Hmul;
  int sampleShift;  // track 1 / 2^sampleShift of hashes for statistics
  bool admitCtl;
  bool oracle = false;
  u64 fixedM  = 0;
  HD(double h, int ss, bool adm) : Hmul(h), sampleShift(ss), admitCtl(adm) {}
  u64 nadm = 0, nrej = 0;
  ~HD() {
    if (!getenv("HDDBG")) return;
    fprintf(stderr,
            "cap %zu M %llu evAge %.0f adm %llu rej %llu sizes:",
            cap,
            (unsigned long long)M,
            evAge,
            (unsigned long long)nadm,
            (unsigned long long)nrej);
    for (int c2 = 0; c2 < NC; ++c2)
      fprintf(stderr, " %zu", L->size(c2));
    fprintf(stderr, "\n");
    for (int c2 = 0; c2 < NC; ++c2) {
      double tot = ninf[c2];
      for (int b = 0; b < NB; ++b)
        tot += n[c2][b];
      fprintf(stderr, " c%d n=%.0f inf=%.0f hd:", c2, tot, ninf[c2]);
      for (int b = 0; b < NB && lo[b] < M; b += 4)
        fprintf(stderr, " %.2g", hd[c2][b] * 1e6);
      fprintf(stderr, "\n");
    }
  }
  string name() const override { return "hd"; }
  unique_ptr<Lists> L;
  vector<u64> last;      // time of last reference (all blocks in sim)
  vector<uint8_t> cls;   // class at last reference
  vector<uint32_t> f;    // prior reference count (exact in sim)
  vector<uint8_t> ccls;  // class of the current reference
  double n[NC][NB]{}, ninf[NC]{};
  double hd[NC][NB]{};
  u64 T = 0, M = 0, nextRecalc = 0, nextDecay = 0;
  deque<pair<u64, int>> fifo;
  vector<u64> lo;
  void init(int N_, size_t c, Ctx* cx) override {
    Policy::init(N_, c, cx);
    L = make_unique<Lists>(N_, NC);
    last.assign(N_, UINT64_MAX);
    cls.assign(N_, 0);
    f.assign(N_, 0);
    ccls.assign(N_, 0);
    M     = max<u64>(1024, u64(8 * c));
    evAge = double(c);
    lo.assign(NB + 1, 0);
    for (int b = 1; b <= NB; ++b)
      lo[b] = u64(16.0 * pow(2.0, (b - 1) / 4.0));
    for (auto& r : n)
      for (auto& v : r)
        v = 0;
    for (auto& v : ninf)
      v = 0;
    for (int c2 = 0; c2 < NC; ++c2)
      for (int b = 0; b < NB; ++b)
        hd[c2][b] = 1.0 / (b + 1);  // prior: plain recency
    fifo.clear();
    T          = 0;
    nextRecalc = 1024;
    nextDecay  = M;
    if (oracle) oraclePrepass();
  }
  // classes of one request's references, from the state before the request
  void classesOf(const vector<int>& h,
                 const vector<u64>& lt,
                 const vector<uint32_t>& ff,
                 u64 t0,
                 vector<int>& out) const {
    out.resize(h.size());
    for (size_t i = 0; i < h.size(); ++i)
      out[i] = classify(ctxQ(h, (int)i, lt, ff, t0 + i + 1));
  }
  void oraclePrepass() {
    M = fixedM ? fixedM : u64(Hmul * cap);
    {
      vector<int> flat;
      flat.push_back(-1);
      for (auto& h : gTrace->req)
        for (int x : h)
          flat.push_back(x);
      gNext.assign(flat.size(), UINT64_MAX);
      vector<u64> nx(N, UINT64_MAX);
      for (size_t p = flat.size(); p-- > 1;) {
        gNext[p]    = nx[flat[p]];
        nx[flat[p]] = p;
      }
    }
    vector<u64> lt(N, UINT64_MAX);
    vector<uint8_t> lc(N, 0);
    vector<uint32_t> ff(N, 0);
    u64 t = 0;
    vector<int> cl;
    for (auto& h : gTrace->req) {
      classesOf(h, lt, ff, t, cl);
      for (size_t i = 0; i < h.size(); ++i) {
        int x = h[i];
        ++t;
        if (lt[x] != UINT64_MAX) {
          u64 g = t - lt[x];
          if (g <= M)
            n[lc[x]][min(NB - 1, bin(g))] += 1;
          else
            ninf[lc[x]] += 1;
        }
        lc[x] = uint8_t(cl[i]);
        lt[x] = t;
        ++ff[x];
      }
    }
    for (int x = 0; x < N; ++x)
      if (lt[x] != UINT64_MAX) ninf[lc[x]] += 1;
    recalc();
  }
  double evAge = 0;
  int bin(u64 a) const {
    if (a >= M) return NB;
    return int(upper_bound(lo.begin(), lo.end(), a) - lo.begin()) - 1;
  }
  bool sampled(int x) const {
    return sampleShift == 0 || ((u64(x) * 0x9E3779B97F4A7C15ull) >> (64 - sampleShift)) == 0;
  }
  bool has(int x) const override { return L->in(x) >= 0; }
  size_t used() const override {
    size_t s = 0;
    for (int c2 = 0; c2 < NC; ++c2)
      s += L->size(c2);
    return s;
  }
  void recalc() {
    for (int c2 = 0; c2 < NC; ++c2) {
      double hits = 0, life = 0, cntAbove = ninf[c2];
      // walk from the top bin down, accumulating
      double sumMid = double(M) * ninf[c2];  // sum of min(G,M) over events above
      for (int b = NB - 1; b >= 0; --b) {
        double mid = 0.5 * double(lo[b] + min(lo[b + 1], M));
        hits += n[c2][b];
        cntAbove += n[c2][b];
        sumMid += n[c2][b] * mid;
        life = sumMid - cntAbove * double(lo[b]);
        if (lo[b] >= M) {
          hd[c2][b] = 0;
          continue;
        }
        hd[c2][b] = (hits + 1e-3) / (life + 1.0);
      }
    }
  }
  double score(int x) const {
    int c2 = L->in(x);
    int b  = bin(T - last[x]);
    return b >= NB ? 0.0 : hd[c2][b];
  }
  void expire() {
    while (!fifo.empty() && fifo.front().first + M < T) {
      auto [t0, x] = fifo.front();
      fifo.pop_front();
      if (last[x] == t0) ninf[cls[x]] += 1;
    }
  }
  struct Q {
    uint32_t fp;
    int fromEnd;
    bool cont;
    u64 gap;
    int nlen;
    u64 contAge;
    u64 t          = 0;
    uint32_t fdeep = 0;
  };
  vector<u64> gNext;
  static int gb(u64 g) { return g < 3000 ? 0 : g < 15000 ? 1 : 2; }
  int classify(const Q& q) const {
    int base;
    if (q.fp == 0)
      base = q.fromEnd == 0 ? 0 : q.fromEnd == 1 ? 1 : (q.cont ? 3 : 2);
    else if (q.fp == 1)
      base = 4;
    else if (q.fp == 2)
      base = 5;
    else
      base = q.fp < 8 ? 6 : 7;
    switch (variant) {
      case 1:
        if (q.fp >= 1) return 8 + (base - 4) * 3 + gb(q.gap);
        return base;
      case 2:
        if (q.fp == 0 && q.cont && q.fromEnd >= 1) return 8 + gb(q.contAge);
        return base;
      case 3:
        if (base == 2) return 8 + (q.nlen < 8 ? 0 : q.nlen < 32 ? 1 : 2);
        return base;
      case 11:
        if (base == 3 || base == 1 || base == 0)
          return 8 + base * 4 + (int)min<uint32_t>(q.fdeep, 3);
        return base;
      case 12:
        if (q.fp == 0 && q.cont)
          return 8 + min<int>(q.fromEnd, 2) * 4 + (int)min<uint32_t>(q.fdeep, 3);
        return base;
      case 9:
        return (q.t < gNext.size() && gNext[q.t] != UINT64_MAX) ? base + 8 : base;
      case 10:
        return (q.t < gNext.size() && gNext[q.t] != UINT64_MAX && gNext[q.t] - q.t < 20000)
                   ? base + 8
                   : base;
      case 4:
        if (q.fp >= 1) return 8 + (base - 4) * 3 + gb(q.gap);
        if (q.fp == 0 && q.cont && q.fromEnd >= 1) return 20 + gb(q.contAge);
        return base;
      default:
        return base;
    }
  }
  // context of the request being referenced
  Q ctxQ(
      const vector<int>& h, int i, const vector<u64>& lt, const vector<uint32_t>& ff, u64 t) const {
    int nh         = (int)h.size();
    bool cont      = nh >= 2 && ff[h[1]] > 0;
    u64 contAge    = UINT64_MAX;
    uint32_t fdeep = 0;
    if (cont) {
      int k = 1;
      while (k + 1 < nh && ff[h[k + 1]] > 0)
        ++k;
      if (lt[h[k]] != UINT64_MAX) contAge = t - lt[h[k]];
      fdeep = ff[h[k]];
    }
    int x = h[i];
    return Q{ff[x],
             nh - 1 - i,
             cont,
             lt[x] == UINT64_MAX ? UINT64_MAX : t - lt[x],
             nh,
             contAge,
             t,
             fdeep};
  }
  vector<int> cl;
  void touch(const vector<int>& h) override {
    int nh = (int)h.size();
    classesOf(h, last, f, T, cl);
    for (int i = 0; i < nh; ++i) {
      int x = h[i];
      ++T;
      int c2 = cl[i];
      if (last[x] != UINT64_MAX && sampled(x)) {
        u64 g = T - last[x];
        if (g <= M) n[cls[x]][min(NB - 1, bin(g))] += 1;
      }
      last[x] = T;
      cls[x]  = uint8_t(c2);
      ccls[x] = uint8_t(c2);
      if (sampled(x)) fifo.push_back({T, x});
      if (f[x] < 1000000) ++f[x];
      if (L->in(x) >= 0) L->mru(c2, x);
    }
    if (oracle) return;
    expire();
    if (T >= nextRecalc) {
      recalc();
      nextRecalc = T + max<u64>(256, cap / 4);
    }
    if (T >= nextDecay) {
      for (auto& r : n)
        for (auto& v : r)
          v *= 0.5;
      for (auto& v : ninf)
        v *= 0.5;
      nextDecay = T + M;
    }
  }
  int victim(double& best) const {
    int v = -1;
    best  = 1e300;
    for (int c2 = 0; c2 < NC; ++c2)
      for (int x = L->first(c2); x >= 0; x = L->next(x)) {
        if (ctx->prot(x)) continue;
        double s = score(x);
        if (s < best) {
          best = s;
          v    = x;
        }
        break;
      }
    return v;
  }
  void store(const vector<int>&, const vector<int>& miss) override {
    for (int x : miss) {
      int c2 = ccls[x];
      if (used() >= cap) {
        double vs;
        int v = victim(vs);
        if (v < 0) continue;
        if (admitCtl && hd[c2][0] < vs) {
          ++nrej;
          continue;
        }
        ++nadm;
        L->unlink(v);
        evAge = 0.99 * evAge + 0.01 * double(T - last[v]);
        if (!oracle) M = max<u64>(1024, u64(Hmul * evAge));
      }
      L->mru(c2, x);
    }
  }
};

// Online version: frequency from a count-min sketch, statistics from 1/2^ss sampled hashes with
// Kaplan-Meier handling of still-pending references (no residency censoring, no pending bias).
struct KHD : Policy {
  static constexpr int NC = 8, NB = 64;
  double Hmul, decayMul;
  int ss;
  bool admitCtl;
  KHD(double h, int s, bool adm, double dm) : Hmul(h), decayMul(dm), ss(s), admitCtl(adm) {}
  string name() const override { return "khd"; }
  unique_ptr<Lists> L;
  vector<u64> last;
  vector<uint8_t> ccls;
  SketchSK sk;
  struct E {
    u64 t;
    uint8_t c;
  };
  unordered_map<int, E> samp;
  double reuse[NC][NB]{}, expired[NC]{}, hd[NC][NB + 1]{};
  u64 T = 0, M = 0, nextRecalc = 0, nextDecay = 0;
  u64 nrej      = 0;
  bool reqClock = getenv("REQCLOCK") != nullptr;
  bool revTouch = getenv("REVTOUCH") != nullptr;
  double delta  = getenv("DELTA") ? atof(getenv("DELTA")) : 0;
  int smooth    = getenv("SMOOTH") ? atoi(getenv("SMOOTH")) : 0;
  double alpha  = getenv("ALPHA") ? atof(getenv("ALPHA")) : 0;
  double theta  = getenv("THETA") ? atof(getenv("THETA")) : 0;
  bool bothEnds = getenv("BOTHENDS") != nullptr;
  double missC[NC]{}, missG[NC]{}, hitC[NC]{};
  ~KHD() {
    if (!getenv("HDDBG")) return;
    fprintf(stderr, "\ncap %zu rej %llu\n", cap, (unsigned long long)nrej);
    for (int c = 0; c < NC; ++c)
      fprintf(stderr,
              " c%d hits %.0f reuse-misses %.0f mean log2 gap %.1f size %zu\n",
              c,
              hitC[c],
              missC[c],
              missC[c] ? missG[c] / missC[c] : 0,
              L->size(c));
  }
  bool exactF = false, noKM = false;
  double skW = 1, skP = 1;
  vector<uint32_t> fx;
  int fq(int x) const { return exactF ? (int)min<uint32_t>(fx[x], 15) : sk.est(x); }
  static u64 lo(int b) { return b == 0 ? 0 : u64(16.0 * pow(2.0, (b - 1) / 4.0)); }
  int bin(u64 a) const {
    if (a >= M) return NB;
    if (a < 16) return 0;
    int b = 1 + int(4.0 * log2(double(a) / 16.0));
    return min(b, NB - 1);
  }
  void init(int N_, size_t c, Ctx* cx) override {
    Policy::init(N_, c, cx);
    L = make_unique<Lists>(N_, NC);
    last.assign(N_, 0);
    ccls.assign(N_, 0);
    fx.assign(N_, 0);
    M = max<u64>(4096, u64(Hmul * c));
    sk.init(size_t(max<u64>(4096, u64(skW * M))), u64(skP * M), 15);
    samp.clear();
    for (auto& r : reuse)
      for (auto& v : r)
        v = 0;
    for (auto& v : expired)
      v = 0;
    for (int a = 0; a < NC; ++a)
      for (int b = 0; b <= NB; ++b)
        hd[a][b] = b == NB ? 0 : 1.0 / (b + 1);
    T          = 0;
    nextRecalc = 1024;
    nextDecay  = u64(decayMul * M);
  }
  u64 salt = getenv("SALT") ? strtoull(getenv("SALT"), 0, 10) : 0;
  bool sampled(int x) const {
    return ss == 0 || ((Sketch::mix(u64(x) ^ salt, 7)) >> (64 - ss)) == 0;
  }
  bool has(int x) const override { return L->in(x) >= 0; }
  size_t used() const override {
    size_t s = 0;
    for (int a = 0; a < NC; ++a)
      s += L->size(a);
    return s;
  }
  void recalc() {
    double pend[NC][NB]{};
    for (auto it = samp.begin(); it != samp.end();) {
      u64 age = T - it->second.t;
      if (age >= M) {
        expired[it->second.c] += 1;
        it = samp.erase(it);
        continue;
      }
      if (!noKM) pend[it->second.c][bin(age)] += 1;
      ++it;
    }
    static double cumAll[NC][NB + 1];
    double poolR[NB] = {0}, poolK[NB] = {0};
    for (int c = 0; c < NC; ++c) {
      cumAll[c][NB] = expired[c];
      for (int b = NB - 1; b >= 0; --b)
        cumAll[c][b] = cumAll[c][b + 1] + reuse[c][b] + pend[c][b];
      for (int b = 0; b < NB; ++b) {
        poolR[b] += reuse[c][b];
        poolK[b] += cumAll[c][b];
      }
    }
    for (int c = 0; c < NC; ++c) {
      double h[NB];
      double* cum = cumAll[c];
      double S    = 1, Sx[NB], hit[NB];
      for (int b = 0; b < NB; ++b) {
        double hp = poolK[b] > 0 ? poolR[b] / poolK[b] : 0;
        double rr = reuse[c][b], kk = cum[b];
        if (smooth > 0 && b >= smooth) {
          int g0    = b - ((b - smooth) % 4);
          rr        = 0;
          kk        = 0;
          double pr = 0, pk = 0;
          for (int g = g0; g < min(NB, g0 + 4); ++g) {
            rr += reuse[c][g];
            kk += cum[g];
            pr += poolR[g];
            pk += poolK[g];
          }
          hp = pk > 0 ? pr / pk : 0;
        }
        h[b]   = (kk + alpha) > 0 ? (rr + alpha * hp) / (kk + alpha) : 0;
        Sx[b]  = S;
        hit[b] = S * h[b];
        S *= 1 - h[b];
      }
      double hs = 0, ls = 0;
      for (int b = NB - 1; b >= 0; --b) {
        double w = double(min(lo(b + 1), M) - min(lo(b), M));
        hs += hit[b];
        ls += (Sx[b] - 0.5 * hit[b]) * w;
        hd[c][b] = (hs + 1e-9) / (ls + 1e-9);
      }
      hd[c][NB] = 0;
    }
  }
  int classify(int fp, int fromEnd, bool cont) const {
    if (fp == 0) return fromEnd == 0 ? 0 : fromEnd == 1 ? 1 : (cont ? 3 : 2);
    if (fp == 1) return 4;
    if (fp == 2) return 5;
    return fp < 8 ? 6 : 7;
  }
  vector<int> cl;
  void touch(const vector<int>& h) override {
    int nh    = (int)h.size();
    bool cont = nh >= 2 && fq(h[1]) > 0;
    cl.resize(nh);
    for (int i = 0; i < nh; ++i)
      cl[i] = classify(fq(h[i]), nh - 1 - i, cont);
    if (reqClock) T += 24;
    for (int j = 0; j < nh; ++j) {
      int i = revTouch ? nh - 1 - j : j;
      int x = h[i];
      if (!reqClock) ++T;
      if (sampled(x)) {
        auto it = samp.find(x);
        if (it != samp.end()) {
          u64 g = T - it->second.t;
          if (g < M)
            reuse[it->second.c][bin(g)] += 1;
          else
            expired[it->second.c] += 1;
          it->second = {T, uint8_t(cl[i])};
        } else
          samp[x] = {T, uint8_t(cl[i])};
      }
      if (L->in(x) < 0 && last[x] != 0) {
        missC[ccls[x]] += 1;
        missG[ccls[x]] += log2(double(T - last[x]));
      }
      if (last[x] != 0 && L->in(x) >= 0) hitC[ccls[x]] += 1;
      sk.inc(x);
      ++fx[x];
      last[x] = T;
      ccls[x] = uint8_t(cl[i]);
      if (L->in(x) >= 0) L->mru(cl[i], x);
    }
    if (T >= nextRecalc) {
      recalc();
      nextRecalc = T + max<u64>(1024, cap / 4);
    }
    if (T >= nextDecay) {
      for (auto& r : reuse)
        for (auto& v : r)
          v *= 0.5;
      for (auto& v : expired)
        v *= 0.5;
      nextDecay = T + u64(decayMul * M);
    }
  }
  double score(int x) const { return hd[L->in(x)][bin(T - last[x])]; }
  int victim(double& best) const {
    int v      = -1;
    best       = 1e300;
    u64 oldest = UINT64_MAX;
    if (theta > 0)
      for (int a = 0; a < NC; ++a)
        for (int x = L->first(a); x >= 0; x = L->next(x)) {
          if (ctx->prot(x)) continue;
          oldest = min<u64>(oldest, last[x]);
          break;
        }
    for (int a = 0; a < NC; ++a)
      for (int x = L->first(a); x >= 0; x = L->next(x)) {
        if (ctx->prot(x)) continue;
        if (theta > 0 && double(T - last[x]) < theta * double(T - oldest)) break;
        double s = score(x);
        if (s < best) {
          best = s;
          v    = x;
        }
        break;
      }
    if (delta > 0 && v >= 0) {
      int vo    = -1;
      u64 bl    = UINT64_MAX;
      double so = 0;
      for (int a = 0; a < NC; ++a)
        for (int x = L->first(a); x >= 0; x = L->next(x)) {
          if (ctx->prot(x)) continue;
          if (last[x] < bl) {
            bl = last[x];
            vo = x;
            so = score(x);
          }
          break;
        }
      if (vo >= 0 && !(best < (1 - delta) * so)) {
        v    = vo;
        best = so;
      }
    }
    if (bothEnds)
      for (int a = 0; a < NC; ++a) {
        int sent = N + a;
        for (int x = L->prv[sent]; x < N; x = L->prv[x]) {
          if (ctx->prot(x)) continue;
          double s = score(x);
          if (s < best) {
            best = s;
            v    = x;
          }
          break;
        }
      }
    return v;
  }
  void store(const vector<int>&, const vector<int>& miss) override {
    for (int x : miss) {
      int c = ccls[x];
      if (used() >= cap) {
        double vs;
        int v = victim(vs);
        if (v < 0) continue;
        if (admitCtl && hd[c][0] < vs) {
          ++nrej;
          continue;
        }
        L->unlink(v);
      }
      L->mru(c, x);
    }
  }
};

// KHD with set dueling against LRU: miniature LRU and KHD caches over 1/2^dss of the hashes
// (capacity cap / 2^dss); a saturating counter of their hit difference picks the main mode.
struct DuelKHD : KHD {
  int dss;
  double margin;
  unique_ptr<LRU> mlru;
  unique_ptr<KHD> mkhd;
  Ctx mctx;
  double psel = 0, pmax = 256;
  bool lruMode     = false;
  u64 modeSwitches = 0, lruTime = 0, reqs = 0;
  DuelKHD(int d, double m) : KHD(16, 4, true, 1), dss(d), margin(m) {}
  string name() const override { return "duel"; }
  bool samp2(int x) const { return ((Sketch::mix(u64(x) ^ 77, 3)) >> (64 - dss)) == 0; }
  void init(int N_, size_t c, Ctx* cx) override {
    KHD::init(N_, c, cx);
    size_t mc = max<size_t>(4, c >> dss);
    mctx.stamp.assign(N_, -1);
    mlru = make_unique<LRU>();
    mlru->init(N_, mc, &mctx);
    mkhd      = make_unique<KHD>(16, 0, true, 1);
    mkhd->skW = 1;
    mkhd->init(N_, mc, &mctx);
    psel    = 0;
    lruMode = false;
  }
  vector<int> sh, smiss;
  void touch(const vector<int>& h) override {
    ++reqs;
    if (lruMode) ++lruTime;
    sh.clear();
    for (int x : h)
      if (samp2(x)) sh.push_back(x);
    if (!sh.empty()) {
      mctx.cur = ctx->cur;
      for (int x : sh)
        mctx.stamp[x] = ctx->cur;
      for (int x : sh) {
        int a = mlru->has(x), b = mkhd->has(x);
        psel = clamp(psel + (a - b), -pmax, pmax);
      }
      mlru->touch(sh);
      mkhd->touch(sh);
      smiss.clear();
      for (int x : sh)
        if (!mlru->has(x)) smiss.push_back(x);
      mlru->store(sh, smiss);
      smiss.clear();
      for (int x : sh)
        if (!mkhd->has(x)) smiss.push_back(x);
      mkhd->store(sh, smiss);
      bool want = psel > margin ? true : psel < -margin ? false : lruMode;
      if (want != lruMode) {
        lruMode = want;
        ++modeSwitches;
      }
    }
    KHD::touch(h);
  }
  ~DuelKHD() {
    if (getenv("HDDBG"))
      fprintf(stderr,
              "\nduel cap %zu switches %llu lru-time %.3f\n",
              cap,
              (unsigned long long)modeSwitches,
              double(lruTime) / max<u64>(1, reqs));
  }
  void store(const vector<int>& h, const vector<int>& miss) override {
    if (!lruMode) {
      KHD::store(h, miss);
      return;
    }
    for (int x : miss) {
      int c = ccls[x];
      if (used() >= cap) {
        int v  = -1;
        u64 bl = UINT64_MAX;
        for (int a = 0; a < NC; ++a)
          for (int y = L->first(a); y >= 0; y = L->next(y)) {
            if (ctx->prot(y)) continue;
            if (last[y] < bl) {
              bl = last[y];
              v  = y;
            }
            break;
          }
        if (v < 0) continue;
        L->unlink(v);
      }
      L->mru(c, x);
    }
  }
};
