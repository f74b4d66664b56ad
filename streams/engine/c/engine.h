/* streams.engine._engine: what its files share (module.c says what each file holds). */
#ifndef VITALS_ENGINE_H
#define VITALS_ENGINE_H
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>

/* ---- configuration: set by configure() (module.c) ----------------------------------------- */
extern PyTypeObject *EventType, *StateType, *DeadlineType, *LastActiveType;
extern Py_ssize_t D_deadline, D_heap, D_next_at, L_by_day, L_day_of;
extern PyObject *f_heappush;
extern Py_ssize_t E_ts, E_app, E_user, E_id, E_type, E_device, E_amount;
extern Py_ssize_t S_first_ts, S_last_login, S_last_engage, S_days, S_ids, S_minutes, S_open, S_last_active_day,
    S_offsets, S_ids_base, S_burst_days, S_persisted_at, S_sealed, S_seg;
extern PyObject *f_to_micros, *f_resolve, *f_burst, *type_counter, *engagement_excluded,
    *no_counts;
extern PyObject *s_rules, *s_meta, *s_store, *s_reroute_topic, *s_dirty_rows, *s_alerts, *s_device_obs,
    *s_deadlines, *s_partition, *s_position, *s_stream_time, *s_closed_day, *s_meta_dirty, *s_next_day_end,
    *s_lateness_ms, *s_skew_ms, *s_sealed_seen, *s_retention, *s_horizon_s, *s_burst, *s_periods, *s_get, *s_set_next_day_end,
    *s_advance, *s_count, *s_cold_event, *s_convert, *s_compact, *s_touched, *s_dirty, *s_last_active, *k_short,
    *k_inter, *k_long, *k_recall;
extern long long LOGINS, PAYMENTS, POSTS, SOCIAL, DAY_MS, HOUR_MS, MINUTE_MS, MAX_BATCH, DEVICE_LATE_DAYS,
    RUN_CHANGED, RUN_APPLIED, RUN_LOGIN, RUN_ENGAGE, RUN_FIRST, RUN_ACTIVE, O_SHORT, O_INTER, O_LONG, HEAP_SLACK,
    HIGH_POTENTIAL, NEW, RETURNING, RESURRECTING, DORMANT, CHURNED, V_NONE, V_LOW, V_MID, V_HIGH;
extern char KEY_SEP; /* state.SEP: between a key's app id and user id */
#define NONE (-1LL)

/* ---- small helpers ----------------------------------------------------------------------- */
static inline long long floordiv(long long a, long long b) { /* Python's floor division (b > 0) */
    long long q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

static inline PyObject *slot(PyObject *o, Py_ssize_t off) { /* borrowed */
    PyObject *v = *(PyObject **)((char *)o + off);
    if (v == NULL) PyErr_SetString(PyExc_AttributeError, "streams.engine._engine: unset struct field");
    return v;
}

static inline void slot_set(PyObject *o, Py_ssize_t off, PyObject *v) { /* steals v */
    PyObject **p = (PyObject **)((char *)o + off);
    PyObject *old = *p;
    *p = v;
    Py_XDECREF(old);
}

static inline int i64(PyObject *o, long long *out) {
#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000 && PYLONG_BITS_IN_DIGIT == 30
    /* 3.11's int layout (sign and digit count in ob_size, 30-bit digits): up to two digits, every
       count and epoch millisecond here, read inline */
    if (PyLong_CheckExact(o)) {
        const digit *d = ((PyLongObject *)o)->ob_digit;
        switch (Py_SIZE(o)) {
        case 0: *out = 0; return 0;
        case 1: *out = (long long)d[0]; return 0;
        case -1: *out = -(long long)d[0]; return 0;
        case 2: *out = (long long)d[0] | (long long)d[1] << PyLong_SHIFT; return 0;
        case -2: *out = -((long long)d[0] | (long long)d[1] << PyLong_SHIFT); return 0;
        default: break;
        }
    }
#endif
    /* not PyLong_AsLongLong: in 3.11 it converts an int of more than one 30-bit digit (every epoch
       millisecond) through a byte array, ten times the work of this digit loop */
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow) {
        PyErr_SetString(PyExc_OverflowError, "streams.engine._engine: an integer beyond 64 bits");
        return -1;
    }
    if (v == -1 && PyErr_Occurred()) return -1;
    *out = v;
    return 0;
}

static inline int slot_i64(PyObject *o, Py_ssize_t off, long long *out) {
    PyObject *v = slot(o, off);
    return v == NULL ? -1 : i64(v, out);
}

static inline int slot_set_i64(PyObject *o, Py_ssize_t off, long long v) {
    PyObject *n = PyLong_FromLongLong(v);
    if (n == NULL) return -1;
    slot_set(o, off, n);
    return 0;
}

static inline int attr_i64(PyObject *o, PyObject *name, long long *out) {
    PyObject *v = PyObject_GetAttr(o, name);
    if (v == NULL) return -1;
    int r = i64(v, out);
    Py_DECREF(v);
    return r;
}

static inline int set_attr_i64(PyObject *o, PyObject *name, long long v) {
    PyObject *n = PyLong_FromLongLong(v);
    if (n == NULL) return -1;
    int r = PyObject_SetAttr(o, name, n);
    Py_DECREF(n);
    return r;
}

static inline int str_eq(PyObject *a, PyObject *b) { /* a, b: str or NULL */
    if (a == b) return 1;
    if (a == NULL || b == NULL) return 0;
    if (PyUnicode_CheckExact(a) && PyUnicode_CheckExact(b)) {
        if (PyUnicode_READY(a) < 0 || PyUnicode_READY(b) < 0) return -1; /* what unicode_eq does, without the call */
        Py_ssize_t n = PyUnicode_GET_LENGTH(a);
        if (n != PyUnicode_GET_LENGTH(b) || PyUnicode_KIND(a) != PyUnicode_KIND(b)) return 0;
        return memcmp(PyUnicode_DATA(a), PyUnicode_DATA(b), (size_t)n * PyUnicode_KIND(a)) == 0;
    }
    return PyObject_RichCompareBool(a, b, Py_EQ);
}

/* an event type's counter (-1: none) and whether it is excluded from engagement (module.c) */
int classify(PyObject *etype, long long *counter, int *excluded);

/* ---- a run of one user's events (run.c) --------------------------------------------------- */
/* the run's counters of one day, held in C while the run stays on that day */
typedef struct {
    long long day; /* NONE: none held */
    long long n, logins, payments, posts, social, complaints;
    PyObject *amount; /* owned while day != NONE */
} DayCounts;
typedef struct { PyObject *ix_short, *ix_inter, *ix_long; } Indexes;

int day_store(PyObject *state, DayCounts *c);
int day_load(PyObject *state, DayCounts *c, long long day, PyObject *day_obj);
PyObject *make_user_key(PyObject *app, PyObject *user);
PyObject *call_method(PyObject *self, PyObject *name, const char *fmt, ...);
int open_episode(PyObject *state, long long index, long long *out);
int set_deadlines(Indexes *ixs, PyObject *key, PyObject *state, long long moved, long long short_ms,
                  long long long_ms, long long inter_ms);
int end_run(PyObject *self, PyObject *dirty, Indexes *ixs, PyObject *key, PyObject *state, long long moved,
            long long off_events, long long off_reroute, long long short_ms, long long long_ms, long long inter_ms);

/* ---- the module's functions ------------------------------------------------------------- */
PyObject *configure(PyObject *mod, PyObject *consts); /* module.c */
PyObject *apply(PyObject *mod, PyObject *const *args, Py_ssize_t nargs); /* apply.c */
PyObject *activity_columns(PyObject *mod, PyObject *const *args, Py_ssize_t nargs); /* columns.c */
PyObject *drain(PyObject *mod, PyObject *const *args, Py_ssize_t nargs); /* drain.c */
PyObject *segment_visit(PyObject *mod, PyObject *const *args, Py_ssize_t nargs); /* segments.c */
int segments_configure(PyObject *consts); /* segments.c: its records' type and names, from configure() */
PyObject *murmur2(PyObject *mod, PyObject *arg); /* partitioner.c */
PyObject *home_partition(PyObject *mod, PyObject *const *args, Py_ssize_t nargs);
PyObject *elsewhere(PyObject *mod, PyObject *const *args, Py_ssize_t nargs);

/* error handling of the functions that end in an ``error:`` label */
#define CHECK(x) do { if ((x) < 0) goto error; } while (0)
#define NOTNULL(x) do { if ((x) == NULL) goto error; } while (0)

#endif
