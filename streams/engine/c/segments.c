#include "engine.h"

/* ---- a day close's visit of one user's segments (segments.py) -------------------------------------
   Python twin: streams.engine.segments.visit. One pass over the user's days gives the window sums (the
   twin of segments.window_sums); then the decisions of segments.close_day_and_next. Returns the next
   change day (an int) when no segment changes at this close; when one does, (the new segment tuple, the
   next change day, the changes as schemas.segments.SegmentChange records, built as make_change builds
   them: the same evidence, the same change_id); None when an amount does not fit 64 bits or a sum is
   beyond 2**53 (hostile amounts: the twin, with Python's integers, takes over). */

/* set by segments_configure() (from configure(), module.c) */
static long long LAPSED = -2; /* segments.LAPSED */
static PyObject *ChangeType, *lifecycle_names, *value_names, *potential_names, *dimension_names;
static PyObject *ek_day, *ek_first, *ek_recent, *ek_previous, *ek_dormant, *ek_window, *ek_churn, *ek_amount30,
    *ek_high, *ek_mid, *ek_entry, *ek_convert, *ek_logins, *ek_window_amount, *ek_streak, *ek_no_payment, *zero_f;

int segments_configure(PyObject *consts) {
    static const struct { PyObject **var; const char *name; } KEYS[] = {
        {&ek_day, "day"}, {&ek_first, "first_active_day"}, {&ek_recent, "active_days_recent"},
        {&ek_previous, "active_days_previous"}, {&ek_dormant, "active_days_dormant_window"},
        {&ek_window, "window_days"}, {&ek_churn, "churn_days"}, {&ek_amount30, "payment_amount_30d"},
        {&ek_high, "high_at_least"}, {&ek_mid, "mid_above"}, {&ek_entry, "entry_day"},
        {&ek_convert, "convert_days"}, {&ek_logins, "login_days"}, {&ek_window_amount, "payment_amount_window"},
        {&ek_streak, "streak_days"}, {&ek_no_payment, "no_payment_days"},
    };
    for (size_t i = 0; i < sizeof(KEYS) / sizeof(KEYS[0]); i++)
        if (*KEYS[i].var == NULL && (*KEYS[i].var = PyUnicode_InternFromString(KEYS[i].name)) == NULL) return -1;
    if (zero_f == NULL && (zero_f = PyFloat_FromDouble(0.0)) == NULL) return -1;
    PyObject *lapsed = PyDict_GetItemString(consts, "LAPSED");
    if (lapsed == NULL) {
        PyErr_SetString(PyExc_KeyError, "streams.engine._engine.configure: missing LAPSED");
        return -1;
    }
    if (i64(lapsed, &LAPSED) < 0) return -1;
    static const struct { PyObject **var; const char *name; Py_ssize_t size; } OBJS[] = {
        {&ChangeType, "SegmentChange", -1}, {&lifecycle_names, "LIFECYCLE_SEGMENTS", 5},
        {&value_names, "VALUE_SEGMENTS", 4}, {&potential_names, "POTENTIAL_SEGMENTS", 3},
        {&dimension_names, "DIMENSIONS", 3},
    };
    for (size_t i = 0; i < sizeof(OBJS) / sizeof(OBJS[0]); i++) {
        PyObject *v = PyDict_GetItemString(consts, OBJS[i].name);
        if (v == NULL) {
            PyErr_Format(PyExc_KeyError, "streams.engine._engine.configure: missing %s", OBJS[i].name);
            return -1;
        }
        if (OBJS[i].size < 0 ? !PyCallable_Check(v) : (!PyTuple_Check(v) || PyTuple_GET_SIZE(v) != OBJS[i].size)) {
            PyErr_Format(PyExc_TypeError, "streams.engine._engine.configure: bad %s", OBJS[i].name);
            return -1;
        }
        for (Py_ssize_t k = 0; OBJS[i].size > 0 && k < OBJS[i].size; k++)
            if (!PyUnicode_Check(PyTuple_GET_ITEM(v, k)) || !PyUnicode_IS_ASCII(PyTuple_GET_ITEM(v, k))) {
                PyErr_Format(PyExc_TypeError, "streams.engine._engine.configure: %s must hold ASCII names",
                             OBJS[i].name);
                return -1;
            }
        Py_INCREF(v);
        Py_XSETREF(*OBJS[i].var, v);
    }
    return 0;
}

/* ---- BLAKE2b (RFC 7693), unkeyed, 16-byte digest: schemas.segments.change_id's hashlib.blake2b ---- */
typedef struct {
    uint64_t h[8], t;
    uint8_t b[128];
    size_t c;
} Blake2b;

static const uint64_t B2_IV[8] = {
    0x6A09E667F3BCC908ULL, 0xBB67AE8584CAA73BULL, 0x3C6EF372FE94F82BULL, 0xA54FF53A5F1D36F1ULL,
    0x510E527FADE682D1ULL, 0x9B05688C2B3E6C1FULL, 0x1F83D9ABFB41BD6BULL, 0x5BE0CD19137E2179ULL};
static const uint8_t B2_SIGMA[12][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4}, {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13}, {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11}, {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5}, {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3}};

#define ROTR64(x, n) (((x) >> (n)) | ((x) << (64 - (n))))
#define B2_G(a, b, c, d, x, y)                                                                                    \
    do {                                                                                                         \
        v[a] = v[a] + v[b] + (x); v[d] = ROTR64(v[d] ^ v[a], 32); v[c] = v[c] + v[d];                              \
        v[b] = ROTR64(v[b] ^ v[c], 24); v[a] = v[a] + v[b] + (y); v[d] = ROTR64(v[d] ^ v[a], 16);                  \
        v[c] = v[c] + v[d]; v[b] = ROTR64(v[b] ^ v[c], 63);                                                        \
    } while (0)

static void b2_compress(Blake2b *s, int last) {
    uint64_t v[16], m[16];
    for (int i = 0; i < 8; i++) {
        v[i] = s->h[i];
        v[i + 8] = B2_IV[i];
    }
    v[12] ^= s->t; /* the high 64 bits of the counter are 0: messages here are short */
    if (last) v[14] = ~v[14];
    for (int i = 0; i < 16; i++) {
        uint64_t w = 0;
        for (int k = 7; k >= 0; k--) w = (w << 8) | s->b[8 * i + k];
        m[i] = w;
    }
    for (int r = 0; r < 12; r++) {
        const uint8_t *sg = B2_SIGMA[r];
        B2_G(0, 4, 8, 12, m[sg[0]], m[sg[1]]);
        B2_G(1, 5, 9, 13, m[sg[2]], m[sg[3]]);
        B2_G(2, 6, 10, 14, m[sg[4]], m[sg[5]]);
        B2_G(3, 7, 11, 15, m[sg[6]], m[sg[7]]);
        B2_G(0, 5, 10, 15, m[sg[8]], m[sg[9]]);
        B2_G(1, 6, 11, 12, m[sg[10]], m[sg[11]]);
        B2_G(2, 7, 8, 13, m[sg[12]], m[sg[13]]);
        B2_G(3, 4, 9, 14, m[sg[14]], m[sg[15]]);
    }
    for (int i = 0; i < 8; i++) s->h[i] ^= v[i] ^ v[i + 8];
}

static void b2_init(Blake2b *s) {
    memcpy(s->h, B2_IV, sizeof(s->h));
    s->h[0] ^= 0x01010000ULL ^ 16; /* no key, 16-byte digest */
    s->t = 0;
    s->c = 0;
}

static void b2_update(Blake2b *s, const void *data, size_t n) {
    const uint8_t *in = data;
    for (size_t i = 0; i < n; i++) {
        if (s->c == 128) {
            s->t += 128;
            b2_compress(s, 0);
            s->c = 0;
        }
        s->b[s->c++] = in[i];
    }
}

static PyObject *b2_hexdigest(Blake2b *s) {
    static const char HEX[] = "0123456789abcdef";
    char out[32];
    s->t += s->c;
    memset(s->b + s->c, 0, 128 - s->c);
    b2_compress(s, 1);
    for (int i = 0; i < 16; i++) {
        unsigned byte = (unsigned)(s->h[i / 8] >> (8 * (i % 8))) & 0xff;
        out[2 * i] = HEX[byte >> 4];
        out[2 * i + 1] = HEX[byte & 15];
    }
    return PyUnicode_FromStringAndSize(out, 32);
}

/* ---- the records of a visit that changes something ------------------------------------------------ */
typedef struct {
    const char *key; /* the user's key: app_id KEY_SEP user_id, UTF-8 */
    Py_ssize_t key_len;
    PyObject *app_id, *user_id, *triggered_at, *list;
} Records;

/* schemas.segments.make_change: SegmentChange(app_id, user_id, dimension, segment, previous, changed_at,
   triggered_at, change_id, evidence), appended to r->list; the evidence from n keys and values (the values
   are stolen, NULL ones mean an error already set). change_id hashes app_id \x1f user_id \x1f dimension
   \x1f segment \x1f str(changed_at), which is the key's bytes followed by the rest. */
static int add_change(Records *r, Py_ssize_t dim, PyObject *names, long long segment, long long previous,
                      long long changed_at, int n, PyObject *const *keys, PyObject **values) {
    int rc = -1;
    PyObject *evidence = NULL, *change_id = NULL, *at = NULL, *change = NULL;
    for (int i = 0; i < n; i++)
        if (values[i] == NULL) goto done;
    if ((evidence = PyDict_New()) == NULL) goto done;
    for (int i = 0; i < n; i++)
        if (PyDict_SetItem(evidence, keys[i], values[i]) < 0) goto done;
    PyObject *dimension = PyTuple_GET_ITEM(dimension_names, dim), *name = PyTuple_GET_ITEM(names, segment);
    PyObject *before = previous == NONE ? Py_None : PyTuple_GET_ITEM(names, previous);
    char decimal[24];
    int len = snprintf(decimal, sizeof(decimal), "%lld", changed_at);
    Blake2b s;
    b2_init(&s);
    b2_update(&s, r->key, (size_t)r->key_len);
    b2_update(&s, "\x1f", 1);
    b2_update(&s, PyUnicode_DATA(dimension), (size_t)PyUnicode_GET_LENGTH(dimension)); /* ASCII (configure) */
    b2_update(&s, "\x1f", 1);
    b2_update(&s, PyUnicode_DATA(name), (size_t)PyUnicode_GET_LENGTH(name));
    b2_update(&s, "\x1f", 1);
    b2_update(&s, decimal, (size_t)len);
    if ((change_id = b2_hexdigest(&s)) == NULL || (at = PyLong_FromLongLong(changed_at)) == NULL) goto done;
    PyObject *args[9] = {r->app_id, r->user_id, dimension, name, before, at, r->triggered_at, change_id, evidence};
    if ((change = PyObject_Vectorcall(ChangeType, args, 9, NULL)) == NULL) goto done;
    rc = PyList_Append(r->list, change);
done:
    for (int i = 0; i < n; i++) Py_XDECREF(values[i]);
    Py_XDECREF(evidence);
    Py_XDECREF(change_id);
    Py_XDECREF(at);
    Py_XDECREF(change);
    return rc;
}

#define L(x) PyLong_FromLongLong(x)
#define SAFE_DOUBLE (1LL << 53) /* |micros| up to this converts to a double exactly, as Python's int / int */

PyObject *segment_visit(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    (void)mod;
    if (nargs != 7 || !PyDict_Check(args[0]) || !PyTuple_Check(args[2]) || !PyTuple_Check(args[4]) ||
        PyTuple_GET_SIZE(args[2]) != 4 || PyTuple_GET_SIZE(args[4]) < 12 || !PyBytes_Check(args[5]))
        return PyErr_Format(PyExc_TypeError, "segment_visit(days, first_ts, seg, day, params, key, wm)");
    if (ChangeType == NULL) return PyErr_Format(PyExc_RuntimeError, "segment_visit: configure() first");
    PyObject *days = args[0], *seg = args[2], *params = args[4];
    long long first_ts, day, sg[4], p[8];
    if (i64(args[1], &first_ts) < 0 || i64(args[3], &day) < 0) return NULL;
    for (int i = 0; i < 4; i++)
        if (i64(PyTuple_GET_ITEM(seg, i), &sg[i]) < 0) return NULL;
    /* a segment index the names do not hold: the twin decides what that means */
    if (sg[0] < NONE || sg[0] >= 5 || sg[1] < NONE || sg[1] >= 4 || sg[2] < NONE || sg[2] >= 3) Py_RETURN_NONE;
    for (int i = 0; i < 8; i++)  /* w, churn, value_window, no_payment, streak, convert, high, mid */
        if (i64(PyTuple_GET_ITEM(params, i), &p[i]) < 0) return NULL;
    PyObject *offsets = PyTuple_GET_ITEM(params, 8);
    if (!PyTuple_Check(offsets) || PyTuple_GET_SIZE(offsets) > 16)
        return PyErr_Format(PyExc_TypeError, "segment_visit: params[8] = at most 16 offsets");
    Py_ssize_t n_off = PyTuple_GET_SIZE(offsets);
    long long off[16];
    for (Py_ssize_t i = 0; i < n_off; i++)
        if (i64(PyTuple_GET_ITEM(offsets, i), &off[i]) < 0) return NULL;
    long long w = p[0], churn = p[1], streak = p[4], convert = p[5], high = p[6], mid = p[7];
    long long r0 = day - w + 1, b0 = day - 2 * w + 1, o0 = day - churn + 1;
    long long v0 = day - p[2] + 1, k0 = day - streak + 1, p0 = day - p[3] + 1;

    long long recent = 0, before = 0, older = 0, logins = 0, value_m = 0, paid = 0, best = NONE;
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    while (PyDict_Next(days, &pos, &k, &v)) {
        long long d, events, login, micros;
        if (i64(k, &d) < 0) return NULL;
        if (!PyTuple_Check(v) || PyTuple_GET_SIZE(v) < 4)
            return PyErr_Format(PyExc_TypeError, "segment_visit: a day's counters must be a tuple");
        if (i64(PyTuple_GET_ITEM(v, 0), &events) < 0 || i64(PyTuple_GET_ITEM(v, 1), &login) < 0) return NULL;
        int overflow = 0;
        micros = PyLong_AsLongLongAndOverflow(PyTuple_GET_ITEM(v, 3), &overflow);
        if (micros == -1 && PyErr_Occurred()) return NULL;
        if (overflow) Py_RETURN_NONE;
        int active = events > 0;
        if (active) {
            for (Py_ssize_t i = 0; i < n_off; i++) {
                if (d + off[i] > day) {
                    if (best == NONE || d + off[i] < best) best = d + off[i];
                    break;
                }
            }
        }
        if (d > day) continue;
        if (active) {
            if (d >= r0) recent += 1;
            else if (d >= b0) before += 1;
            if (o0 <= d && d < r0) older += 1;
        }
        if (micros) {
            if (d >= v0 && __builtin_add_overflow(value_m, micros, &value_m)) Py_RETURN_NONE;
            if (d >= p0 && __builtin_add_overflow(paid, micros, &paid)) Py_RETURN_NONE;
        }
        if (d >= k0 && login > 0) logins += 1;
    }

    /* the decisions of close_day_and_next, in its order */
    long long first = floordiv(first_ts, DAY_MS), lifecycle = sg[0], tier, potential = sg[2], potential_day = sg[3];
    long long entered_from = NONE, lapse_day = NONE;
    int life_changes = 0, value_changes, lapses = 0, enters = 0;
    if (first <= day) {
        long long now = first >= r0 ? NEW : recent && before ? RETURNING : recent ? RESURRECTING
                        : older ? DORMANT : CHURNED;
        life_changes = now != sg[0];
        lifecycle = now;
    }
    tier = value_m >= high ? V_HIGH : value_m > mid ? V_MID : value_m > 0 ? V_LOW : V_NONE;
    value_changes = tier != sg[1] && (sg[1] != NONE || tier != V_NONE);
    int decide = 1;
    if (potential == HIGH_POTENTIAL) {
        lapse_day = potential_day + convert;
        if (day < lapse_day) decide = 0;
        else {
            lapses = 1;
            potential = LAPSED;
            potential_day = lapse_day;
        }
    }
    if (decide && (potential == NONE || day > potential_day) && logins == streak && paid == 0) {
        enters = 1;
        entered_from = potential;
        potential = HIGH_POTENTIAL;
        potential_day = day;
    }
    if (potential == HIGH_POTENTIAL) {
        long long lapse = potential_day + convert;
        if (lapse > day && (best == NONE || lapse < best)) best = lapse;
    }
    if (!life_changes && !value_changes && !lapses && !enters) return PyLong_FromLongLong(best);

    /* something changes: the records, as make_change builds them */
    if (value_changes && (value_m > SAFE_DOUBLE || value_m < -SAFE_DOUBLE)) Py_RETURN_NONE;
    const char *key = PyBytes_AS_STRING(args[5]);
    Py_ssize_t key_len = PyBytes_GET_SIZE(args[5]);
    const char *sep = memchr(key, KEY_SEP, (size_t)key_len);
    if (sep == NULL) Py_RETURN_NONE;
    Records r = {key, key_len, NULL, NULL, args[6], NULL};
    PyObject *result = NULL;
    long long start = day * DAY_MS;
    NOTNULL(r.app_id = PyUnicode_DecodeUTF8(key, sep - key, "strict"));
    NOTNULL(r.user_id = PyUnicode_DecodeUTF8(sep + 1, key + key_len - sep - 1, "strict"));
    NOTNULL(r.list = PyList_New(0));
    if (life_changes) {
        PyObject *keys[7] = {ek_day, ek_first, ek_recent, ek_previous, ek_dormant, ek_window, ek_churn};
        PyObject *values[7] = {L(day), L(first), L(recent), L(before), L(older), L(w), L(churn)};
        CHECK(add_change(&r, 0, lifecycle_names, lifecycle, sg[0], start, 7, keys, values));
    }
    if (value_changes) {
        PyObject *keys[5] = {ek_day, ek_amount30, ek_window, ek_high, ek_mid};
        PyObject *values[5] = {L(day), PyFloat_FromDouble((double)value_m / 1e6), L(p[2]),
                               Py_NewRef(PyTuple_GET_ITEM(params, 10)), Py_NewRef(PyTuple_GET_ITEM(params, 11))};
        CHECK(add_change(&r, 1, value_names, tier, sg[1], start, 5, keys, values));
    }
    if (lapses) {
        PyObject *keys[3] = {ek_day, ek_entry, ek_convert};
        PyObject *values[3] = {L(lapse_day), L(sg[3]), L(convert)};
        CHECK(add_change(&r, 2, potential_names, LAPSED, HIGH_POTENTIAL, lapse_day * DAY_MS, 3, keys, values));
    }
    if (enters) {
        PyObject *keys[5] = {ek_day, ek_logins, ek_window_amount, ek_streak, ek_no_payment};
        PyObject *values[5] = {L(day), L(logins), Py_NewRef(zero_f), L(streak), L(p[3])};
        CHECK(add_change(&r, 2, potential_names, HIGH_POTENTIAL, entered_from, start, 5, keys, values));
    }
    result = Py_BuildValue("((LLLL)LO)", lifecycle, value_changes ? tier : sg[1], potential, potential_day, best,
                           r.list);
error:
    Py_XDECREF(r.app_id);
    Py_XDECREF(r.user_id);
    Py_XDECREF(r.list);
    return result;
}
