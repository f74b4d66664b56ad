/* The per-event loop of streams/engine.py's UserPartition.apply, in C.
 *
 * The same algorithm, statement for statement, as UserPartition._apply_py: read it there first.
 * What only a few events reach (a new stream-time step that fires deadlines or day closes, a new
 * user's state, resolved episodes, burst alerts, dead letters, per-app outcome counts) calls back
 * into the same Python methods and functions the Python loop calls; what every event does (the
 * watermark, the dedup set, the day's counters, the burst minute, the dirty row) is done here.
 *
 * Fields of the msgspec structs Event and UserState are read and written at their slot offsets,
 * taken from their member descriptors by configure(): the same storage their attribute access
 * uses. Tests run the engine both ways and compare each with the batch oracle.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
/* xxHash 0.8.3 (BSD 2-Clause, vendored): XXH3_64bits of an event id's UTF-8 bytes, the hash the
   Python loop takes with the xxhash package (state.event_hash); XXH3's output is stable since 0.8.0 */
#define XXH_INLINE_ALL
#include "vendor/xxhash.h"

/* ---- configuration (configure()) ---------------------------------------------------------- */
static PyTypeObject *EventType, *StateType, *DeadlineType, *LastActiveType;
static Py_ssize_t D_deadline, D_heap, D_next_at, L_by_day, L_day_of;
static PyObject *f_heappush;
static Py_ssize_t E_ts, E_app, E_user, E_id, E_type, E_device, E_amount;
static Py_ssize_t S_first_ts, S_last_login, S_last_engage, S_days, S_ids, S_minutes, S_open, S_last_active_day,
    S_offsets, S_ids_base, S_burst_days, S_persisted_at;
static PyObject *f_to_micros, *f_resolve, *f_burst, *type_counter, *engagement_excluded,
    *no_counts;
static PyObject *s_rules, *s_meta, *s_store, *s_reroute_topic, *s_dirty_rows, *s_alerts, *s_device_obs,
    *s_deadlines, *s_partition, *s_position, *s_stream_time, *s_closed_day, *s_meta_dirty, *s_next_day_end,
    *s_lateness_ms, *s_retention, *s_horizon_s, *s_burst, *s_periods, *s_get, *s_set_next_day_end,
    *s_advance, *s_count, *s_beyond_retention, *s_compact, *s_touched, *s_dirty, *s_last_active, *k_short,
    *k_inter, *k_long;
static long long LOGINS, PAYMENTS, POSTS, SOCIAL, DAY_MS, HOUR_MS, MINUTE_MS, MAX_BATCH, DEVICE_LATE_DAYS,
    RUN_CHANGED, RUN_APPLIED, RUN_LOGIN, RUN_ENGAGE, RUN_FIRST, RUN_ACTIVE, O_SHORT, O_INTER, O_LONG;
#define NONE (-1LL)

static inline long long floordiv(long long a, long long b) { /* Python's floor division (b > 0) */
    long long q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

static inline PyObject *slot(PyObject *o, Py_ssize_t off) { /* borrowed */
    PyObject *v = *(PyObject **)((char *)o + off);
    if (v == NULL) PyErr_SetString(PyExc_AttributeError, "vitals._engine: unset struct field");
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
        PyErr_SetString(PyExc_OverflowError, "vitals._engine: an integer beyond 64 bits");
        return -1;
    }
    if (v == -1 && PyErr_Occurred()) return -1;
    *out = v;
    return 0;
}

static int slot_i64(PyObject *o, Py_ssize_t off, long long *out) {
    PyObject *v = slot(o, off);
    return v == NULL ? -1 : i64(v, out);
}

static int slot_set_i64(PyObject *o, Py_ssize_t off, long long v) {
    PyObject *n = PyLong_FromLongLong(v);
    if (n == NULL) return -1;
    slot_set(o, off, n);
    return 0;
}

static int attr_i64(PyObject *o, PyObject *name, long long *out) {
    PyObject *v = PyObject_GetAttr(o, name);
    if (v == NULL) return -1;
    int r = i64(v, out);
    Py_DECREF(v);
    return r;
}

static int set_attr_i64(PyObject *o, PyObject *name, long long v) {
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

static Py_ssize_t member_offset(PyTypeObject *type, const char *name) {
    PyObject *d = PyDict_GetItemString(type->tp_dict, name);
    if (d == NULL || !PyObject_TypeCheck(d, &PyMemberDescr_Type)) {
        PyErr_Format(PyExc_TypeError, "%s.%s is not a struct field", type->tp_name, name);
        return -1;
    }
    PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
    if (m->type != T_OBJECT_EX && m->type != T_OBJECT) {
        PyErr_Format(PyExc_TypeError, "%s.%s is not an object field", type->tp_name, name);
        return -1;
    }
    return m->offset;
}

static int const_i64(PyObject *consts, const char *name, long long *out) {
    PyObject *v = PyDict_GetItemString(consts, name);
    if (v == NULL) {
        PyErr_Format(PyExc_KeyError, "vitals._engine.configure: missing %s", name);
        return -1;
    }
    return i64(v, out);
}

static int const_obj(PyObject *consts, const char *name, PyObject **out) {
    PyObject *v = PyDict_GetItemString(consts, name);
    if (v == NULL) {
        PyErr_Format(PyExc_KeyError, "vitals._engine.configure: missing %s", name);
        return -1;
    }
    Py_INCREF(v);
    Py_XSETREF(*out, v);
    return 0;
}

static int build_type_table(void);

static PyObject *configure(PyObject *mod, PyObject *consts) {
    if (!PyDict_Check(consts)) return PyErr_Format(PyExc_TypeError, "configure: a dict expected");
    PyObject *et = NULL, *st = NULL;
    if (const_obj(consts, "Event", &et) < 0 || const_obj(consts, "UserState", &st) < 0) return NULL;
    if (!PyType_Check(et) || !PyType_Check(st)) return PyErr_Format(PyExc_TypeError, "configure: types expected");
    Py_XSETREF(EventType, (PyTypeObject *)et);
    Py_XSETREF(StateType, (PyTypeObject *)st);
    PyObject *dt = NULL, *lt = NULL;
    if (const_obj(consts, "DeadlineIndex", &dt) < 0 || const_obj(consts, "LastActiveIndex", &lt) < 0) return NULL;
    if (!PyType_Check(dt) || !PyType_Check(lt)) return PyErr_Format(PyExc_TypeError, "configure: types expected");
    Py_XSETREF(DeadlineType, (PyTypeObject *)dt);
    Py_XSETREF(LastActiveType, (PyTypeObject *)lt);
#define OFF(var, type, name) if ((var = member_offset(type, name)) < 0) return NULL
    OFF(E_ts, EventType, "ts"); OFF(E_app, EventType, "app_id"); OFF(E_user, EventType, "user_id");
    OFF(E_id, EventType, "event_id"); OFF(E_type, EventType, "type"); OFF(E_device, EventType, "device_id");
    OFF(E_amount, EventType, "amount");
    OFF(S_first_ts, StateType, "first_ts"); OFF(S_last_login, StateType, "last_login");
    OFF(S_last_engage, StateType, "last_engage"); OFF(S_days, StateType, "days"); OFF(S_ids, StateType, "ids");
    OFF(S_minutes, StateType, "minutes"); OFF(S_open, StateType, "open");
    OFF(S_last_active_day, StateType, "last_active_day"); OFF(S_offsets, StateType, "offsets");
    OFF(S_ids_base, StateType, "ids_base"); OFF(S_burst_days, StateType, "burst_days");
    OFF(S_persisted_at, StateType, "persisted_at");
    OFF(D_deadline, DeadlineType, "_deadline"); OFF(D_heap, DeadlineType, "_heap");
    OFF(D_next_at, DeadlineType, "next_at"); OFF(L_by_day, LastActiveType, "_by_day");
    OFF(L_day_of, LastActiveType, "_day_of");
#undef OFF
#define CI(var) if (const_i64(consts, #var, &var) < 0) return NULL
    CI(LOGINS); CI(PAYMENTS); CI(POSTS); CI(SOCIAL); CI(DAY_MS); CI(HOUR_MS); CI(MINUTE_MS); CI(MAX_BATCH);
    CI(DEVICE_LATE_DAYS); CI(RUN_CHANGED); CI(RUN_APPLIED); CI(RUN_LOGIN); CI(RUN_ENGAGE); CI(RUN_FIRST);
    CI(RUN_ACTIVE); CI(O_SHORT); CI(O_INTER); CI(O_LONG);
#undef CI
    if (const_i64(consts, "NONE", &(long long){0}) < 0 || PyLong_AsLongLong(PyDict_GetItemString(consts, "NONE"))
        != NONE) return PyErr_Format(PyExc_ValueError, "configure: NONE must be -1");
#define CO(var, name) if (const_obj(consts, name, &var) < 0) return NULL
    CO(f_to_micros, "to_micros");
    CO(f_resolve, "resolve"); CO(f_burst, "burst_alert"); CO(type_counter, "TYPE_COUNTER");
    CO(engagement_excluded, "ENGAGEMENT_EXCLUDED"); CO(no_counts, "NO_COUNTS");
    CO(f_heappush, "heappush"); CO(k_short, "NO_LOGIN_SHORT"); CO(k_inter, "NO_INTERACTION"); CO(k_long, "NO_LOGIN_LONG");
#undef CO
    if (!PyDict_Check(type_counter) || !PyAnySet_Check(engagement_excluded) || !PyTuple_Check(no_counts)
        || PyTuple_GET_SIZE(no_counts) != 7)
        return PyErr_Format(PyExc_TypeError, "configure: bad TYPE_COUNTER, ENGAGEMENT_EXCLUDED or NO_COUNTS");
    if (build_type_table() < 0) return NULL;
    Py_RETURN_NONE;
}

/* What an event type counts as, looked up by comparing bytes: the types of TYPE_COUNTER and
   ENGAGEMENT_EXCLUDED (all ASCII) with their counter (-1: none) and exclusion. An event's type is a
   new str each time, so a dict or set lookup would hash it first. */
#define MAX_TYPES 32
typedef struct {
    const char *name; /* the key's ASCII data (the key is kept alive by the dict or set) */
    Py_ssize_t len;
    long long counter;
    int excluded;
} TypeEntry;
static TypeEntry type_table[MAX_TYPES];
static int n_types = -1; /* -1: a type is not ASCII, use the dict and the set */

static void type_entry(PyObject *name, long long counter, int excluded) {
    if (!PyUnicode_Check(name) || PyUnicode_READY(name) < 0 || !PyUnicode_IS_COMPACT_ASCII(name)
        || n_types >= MAX_TYPES) {
        n_types = -1;
        return;
    }
    for (int i = 0; i < n_types; i++)
        if (type_table[i].len == PyUnicode_GET_LENGTH(name)
            && memcmp(type_table[i].name, PyUnicode_DATA(name), (size_t)type_table[i].len) == 0) {
            if (counter != -1) type_table[i].counter = counter;
            type_table[i].excluded |= excluded;
            return;
        }
    type_table[n_types++] = (TypeEntry){PyUnicode_DATA(name), PyUnicode_GET_LENGTH(name), counter, excluded};
}

static int build_type_table(void) {
    n_types = 0;
    Py_ssize_t pos = 0;
    PyObject *key, *value, *it, *item;
    while (n_types >= 0 && PyDict_Next(type_counter, &pos, &key, &value)) {
        long long counter = PyLong_AsLongLong(value);
        if (counter == -1 && PyErr_Occurred()) return -1;
        type_entry(key, counter, 0);
    }
    if ((it = PyObject_GetIter(engagement_excluded)) == NULL) return -1;
    while (n_types >= 0 && (item = PyIter_Next(it)) != NULL) {
        type_entry(item, -1, 1);
        Py_DECREF(item);
    }
    Py_DECREF(it);
    return PyErr_Occurred() ? -1 : 0;
}

static int classify(PyObject *etype, long long *counter, int *excluded) {
    if (n_types >= 0 && PyUnicode_CheckExact(etype) && PyUnicode_IS_COMPACT_ASCII(etype)) {
        Py_ssize_t len = PyUnicode_GET_LENGTH(etype);
        const char *data = PyUnicode_DATA(etype);
        for (int i = 0; i < n_types; i++)
            if (type_table[i].len == len && memcmp(type_table[i].name, data, (size_t)len) == 0) {
                *counter = type_table[i].counter;
                *excluded = type_table[i].excluded;
                return 0;
            }
        *counter = -1;
        *excluded = 0;
        return 0;
    }
    PyObject *slot_obj = PyDict_GetItemWithError(type_counter, etype);
    *counter = -1;
    if (slot_obj == NULL) {
        if (PyErr_Occurred()) return -1;
    } else if (i64(slot_obj, counter) < 0) return -1;
    *excluded = PySet_Contains(engagement_excluded, etype);
    return *excluded < 0 ? -1 : 0;
}

/* ---- the loop ------------------------------------------------------------------------------ */

/* the run's counters of one day, held in C while the run stays on that day */
typedef struct {
    long long day; /* NONE: none held */
    long long n, logins, payments, posts, social, complaints;
    PyObject *amount; /* owned while day != NONE */
} DayCounts;

static int day_store(PyObject *state, DayCounts *c) { /* state.days[c.day] = (...) */
    if (c->day == NONE) return 0;
    PyObject *days = slot(state, S_days);
    if (days == NULL) return -1;
    PyObject *t = PyTuple_New(7);
    if (t != NULL) {
        long long v[7] = {c->n, c->logins, c->payments, 0, c->posts, c->social, c->complaints};
        for (int i = 0; i < 7; i++) {
            PyObject *item = i == 3 ? Py_NewRef(c->amount) : PyLong_FromLongLong(v[i]);
            if (item == NULL) {
                Py_CLEAR(t);
                break;
            }
            PyTuple_SET_ITEM(t, i, item);
        }
    }
    PyObject *k = t == NULL ? NULL : PyLong_FromLongLong(c->day);
    int r = k == NULL ? -1 : PyDict_SetItem(days, k, t);
    Py_XDECREF(k);
    Py_XDECREF(t);
    Py_CLEAR(c->amount);
    c->day = NONE;
    return r;
}

static int day_load(PyObject *state, DayCounts *c, long long day, PyObject *day_obj) {
    PyObject *days = slot(state, S_days);
    if (days == NULL) return -1;
    PyObject *t = PyDict_GetItemWithError(days, day_obj);
    if (t == NULL) {
        if (PyErr_Occurred()) return -1;
        t = no_counts;
    }
    if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 7) {
        PyErr_SetString(PyExc_TypeError, "vitals._engine: a day's counters must be a 7-tuple");
        return -1;
    }
    if (i64(PyTuple_GET_ITEM(t, 0), &c->n) < 0 || i64(PyTuple_GET_ITEM(t, 1), &c->logins) < 0
        || i64(PyTuple_GET_ITEM(t, 2), &c->payments) < 0 || i64(PyTuple_GET_ITEM(t, 4), &c->posts) < 0
        || i64(PyTuple_GET_ITEM(t, 5), &c->social) < 0 || i64(PyTuple_GET_ITEM(t, 6), &c->complaints) < 0)
        return -1;
    c->amount = Py_NewRef(PyTuple_GET_ITEM(t, 3));
    c->day = day;
    return 0;
}

static PyObject *make_user_key(PyObject *app, PyObject *user) { /* state.user_key: app \x1f user, UTF-8 */
    Py_ssize_t n_app, n_user;
    const char *c_app = PyUnicode_AsUTF8AndSize(app, &n_app);
    if (c_app == NULL) return NULL;
    const char *c_user = PyUnicode_AsUTF8AndSize(user, &n_user);
    if (c_user == NULL) return NULL;
    PyObject *key = PyBytes_FromStringAndSize(NULL, n_app + 1 + n_user);
    if (key == NULL) return NULL;
    char *p = PyBytes_AS_STRING(key);
    memcpy(p, c_app, (size_t)n_app);
    p[n_app] = '\x1f';
    memcpy(p + n_app + 1, c_user, (size_t)n_user);
    return key;
}

static PyObject *call_method(PyObject *self, PyObject *name, const char *fmt, ...) {
    va_list va;
    va_start(va, fmt);
    PyObject *args = Py_VaBuildValue(fmt, va);
    va_end(va);
    if (args == NULL) return NULL;
    PyObject *meth = PyObject_GetAttr(self, name);
    PyObject *r = meth == NULL ? NULL : PyObject_Call(meth, args, NULL);
    Py_XDECREF(meth);
    Py_DECREF(args);
    return r;
}

/* state.open[index]: an episode's start, or NONE */
static int open_episode(PyObject *state, long long index, long long *out) {
    PyObject *open_ = slot(state, S_open);
    if (open_ == NULL) return -1;
    if (!PyTuple_Check(open_) || PyTuple_GET_SIZE(open_) != 5) {
        PyErr_SetString(PyExc_TypeError, "UserState.open must be a 5-tuple");
        return -1;
    }
    return i64(PyTuple_GET_ITEM(open_, index), out);
}

/* DeadlineIndex.set: index ``key`` at ``deadline``; a negative deadline removes it */
static int deadline_set(PyObject *ix, PyObject *key, long long deadline) {
    PyObject *deadlines = slot(ix, D_deadline);
    if (deadlines == NULL) return -1;
    PyObject *old_obj = PyDict_GetItemWithError(deadlines, key);
    long long old = 0;
    if (old_obj == NULL) {
        if (PyErr_Occurred()) return -1;
    } else if (i64(old_obj, &old) < 0) {
        return -1;
    }
    if (old_obj != NULL && old == deadline) return 0;
    if (deadline < 0) {
        return old_obj != NULL ? PyDict_DelItem(deadlines, key) : 0;
    }
    PyObject *d = PyLong_FromLongLong(deadline);
    if (d == NULL) return -1;
    if (PyDict_SetItem(deadlines, key, d) < 0) goto fail;
    if (old_obj != NULL && old < deadline) { /* the entry at ``old`` stands for it */
        Py_DECREF(d);
        return 0;
    }
    PyObject *heap = slot(ix, D_heap);
    if (heap == NULL) goto fail;
    Py_INCREF(heap); /* the heap read before a compaction, as in Python (the new one holds the entry) */
    if (PyList_GET_SIZE(heap) > 2 * PyDict_GET_SIZE(deadlines) + 1024) {
        PyObject *r = PyObject_CallMethodNoArgs(ix, s_compact);
        if (r == NULL) { Py_DECREF(heap); goto fail; }
        Py_DECREF(r);
    }
    PyObject *entry = PyTuple_Pack(2, d, key);
    PyObject *r = entry == NULL ? NULL : PyObject_CallFunctionObjArgs(f_heappush, heap, entry, NULL);
    Py_XDECREF(entry);
    Py_DECREF(heap);
    if (r == NULL) goto fail;
    Py_DECREF(r);
    long long next_at;
    if (slot_i64(ix, D_next_at, &next_at) < 0) goto fail;
    if (deadline < next_at) slot_set(ix, D_next_at, Py_NewRef(d));
    Py_DECREF(d);
    return 0;
fail:
    Py_DECREF(d);
    return -1;
}

/* LastActiveIndex.touch */
static int last_active_touch(PyObject *ix, PyObject *key, PyObject *day_obj) {
    PyObject *by_day = slot(ix, L_by_day), *day_of = slot(ix, L_day_of);
    if (by_day == NULL || day_of == NULL) return -1;
    long long day;
    if (i64(day_obj, &day) < 0) return -1;
    PyObject *old_obj = PyDict_GetItemWithError(day_of, key);
    if (old_obj == NULL) {
        if (PyErr_Occurred()) return -1;
    } else {
        long long old;
        if (i64(old_obj, &old) < 0) return -1;
        if (old >= day) return 0;
        PyObject *members = PyObject_GetItem(by_day, old_obj);
        if (members == NULL) return -1;
        int r = PySet_Discard(members, key);
        Py_DECREF(members);
        if (r < 0) return -1;
    }
    if (PyDict_SetItem(day_of, key, day_obj) < 0) return -1;
    PyObject *members = PyDict_GetItemWithError(by_day, day_obj);
    if (members == NULL) {
        if (PyErr_Occurred()) return -1;
        members = PySet_New(NULL);
        if (members == NULL) return -1;
        int r = PyDict_SetItem(by_day, day_obj, members);
        Py_DECREF(members); /* the dict holds it */
        if (r < 0) return -1;
    }
    return PySet_Add(members, key);
}

typedef struct { PyObject *ix_short, *ix_inter, *ix_long; } Indexes;

/* PartitionIndexes._set_deadlines: the absence deadlines whose inputs ``moved`` */
static int set_deadlines(Indexes *ixs, PyObject *key, PyObject *state, long long moved, long long short_ms,
                         long long long_ms, long long inter_ms) {
    long long o_short, o_long, o_inter, last_login, last_engage;
    if (open_episode(state, O_SHORT, &o_short) < 0 || open_episode(state, O_LONG, &o_long) < 0
        || open_episode(state, O_INTER, &o_inter) < 0)
        return -1;
    if (moved & RUN_LOGIN) {
        if (slot_i64(state, S_last_login, &last_login) < 0) return -1;
        if (deadline_set(ixs->ix_short, key, o_short != NONE ? NONE : last_login + short_ms) < 0) return -1;
        if (deadline_set(ixs->ix_long, key, o_long != NONE ? NONE : last_login + long_ms) < 0) return -1;
    }
    if (slot_i64(state, S_last_engage, &last_engage) < 0) return -1;
    if (moved & RUN_ENGAGE || (moved & RUN_FIRST && last_engage == NONE)) {
        long long since = last_engage;
        if (last_engage == NONE && slot_i64(state, S_first_ts, &since) < 0) return -1;
        if (deadline_set(ixs->ix_inter, key, o_inter != NONE ? NONE : since + inter_ms) < 0) return -1;
    }
    return 0;
}

/* UserPartition._end_run: what a run of one user's events changed beyond its state's fields */
static int end_run(PyObject *self, PyObject *dirty, Indexes *ixs, PyObject *key, PyObject *state, long long moved,
                   long long off_events, long long off_reroute, long long short_ms, long long long_ms,
                   long long inter_ms) {
    if (moved & (RUN_CHANGED | RUN_APPLIED)) {
        PyObject *offs = Py_BuildValue("(LL)", off_events, off_reroute);
        if (offs == NULL) return -1;
        slot_set(state, S_offsets, offs);
        if (PyDict_SetItem(dirty, key, state) < 0) return -1;
    }
    if (!(moved & RUN_APPLIED)) return 0;
    PyObject *touched = PyObject_GetAttr(self, s_touched); /* a day close replaces it */
    if (touched == NULL) return -1;
    int r = PySet_Check(touched) ? PySet_Add(touched, key) : -1;
    if (r < 0 && !PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "touched must be a set");
    Py_DECREF(touched);
    if (r < 0) return -1;
    if (moved & (RUN_LOGIN | RUN_ENGAGE | RUN_FIRST)
        && set_deadlines(ixs, key, state, moved, short_ms, long_ms, inter_ms) < 0)
        return -1;
    if (moved & RUN_ACTIVE) {
        PyObject *last_active = PyObject_GetAttr(self, s_last_active);
        if (last_active == NULL) return -1;
        PyObject *day = slot(state, S_last_active_day);
        r = day == NULL ? -1 : Py_TYPE(last_active) == LastActiveType ? last_active_touch(last_active, key, day) : -1;
        if (r < 0 && !PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "last_active must be a LastActiveIndex");
        Py_DECREF(last_active);
        if (r < 0) return -1;
    }
    return 0;
}

#define CALL_M(...) do { PyObject *r_ = call_method(__VA_ARGS__); if (r_ == NULL) goto error; Py_DECREF(r_); } while (0)
#define CALL_F(...) do { PyObject *r_ = PyObject_CallFunction(__VA_ARGS__); if (r_ == NULL) goto error; Py_DECREF(r_); } while (0)
#define CHECK(x) do { if ((x) < 0) goto error; } while (0)
#define NOTNULL(x) do { if ((x) == NULL) goto error; } while (0)

static PyObject *apply(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) return PyErr_Format(PyExc_TypeError, "apply(partition, messages, out)");
    if (EventType == NULL) return PyErr_Format(PyExc_RuntimeError, "vitals._engine: configure() first");
    PyObject *self = args[0], *messages = args[1], *out = args[2];
    if (!PyList_Check(messages)) return PyErr_Format(PyExc_TypeError, "apply: messages must be a list");

    PyObject *rules_for = NULL, *meta = NULL, *store = NULL, *reroute = NULL, *dirty_rows = NULL, *alerts = NULL,
             *device_obs = NULL, *deadlines = NULL, *ix_short = NULL, *ix_inter = NULL, *ix_long = NULL,
             *partition = NULL, *store_get = NULL, *rules = NULL, *key = NULL, *state = NULL, *row_key = NULL,
             *tmp = NULL, *tmp2 = NULL, *result = NULL, *dirty = NULL;
    DayCounts c = {NONE, 0, 0, 0, 0, 0, 0, NULL};
    long long lateness, position_max, st, wm, wm_day, retention = 0, horizon_ms = 0, burst = 0, short_ms = 0,
        long_ms = 0, inter_ms = 0, run_short = 0, run_long = 0, run_inter = 0, moved = 0, off_events = NONE, off_reroute = NONE, row_day = NONE,
        obs_day = NONE, accepted = 0, late_events = 0, duplicates = 0, replayed = 0;
    PyObject *rules_app = NULL, *app_id = NULL, *user_id = NULL; /* borrowed from the events */
    PyObject *obs_app = NULL, *obs_device = NULL, *obs_user = NULL;

    NOTNULL(rules_for = PyObject_GetAttr(self, s_rules));
    CHECK(attr_i64(rules_for, s_lateness_ms, &lateness));
    NOTNULL(meta = PyObject_GetAttr(self, s_meta));
    NOTNULL(store = PyObject_GetAttr(self, s_store));
    NOTNULL(store_get = PyObject_GetAttr(store, s_get));
    NOTNULL(reroute = PyObject_GetAttr(self, s_reroute_topic));
    NOTNULL(dirty_rows = PyObject_GetAttr(out, s_dirty_rows));
    NOTNULL(alerts = PyObject_GetAttr(out, s_alerts));
    NOTNULL(device_obs = PyObject_GetAttr(out, s_device_obs));
    if (!PyDict_Check(dirty_rows) || !PyList_Check(alerts) || !PyDict_Check(device_obs)) {
        PyErr_SetString(PyExc_TypeError, "apply: bad Outputs");
        goto error;
    }
    NOTNULL(deadlines = PyObject_GetAttr(self, s_deadlines));
    NOTNULL(ix_short = PyObject_GetItem(deadlines, k_short));
    NOTNULL(ix_inter = PyObject_GetItem(deadlines, k_inter));
    NOTNULL(ix_long = PyObject_GetItem(deadlines, k_long));
    if (Py_TYPE(ix_short) != DeadlineType || Py_TYPE(ix_inter) != DeadlineType || Py_TYPE(ix_long) != DeadlineType) {
        PyErr_SetString(PyExc_TypeError, "apply: the deadline indexes must be DeadlineIndex");
        goto error;
    }
    Indexes ixs = {ix_short, ix_inter, ix_long};
    NOTNULL(dirty = PyObject_GetAttr(store, s_dirty));
    if (!PyDict_Check(dirty)) {
        PyErr_SetString(PyExc_TypeError, "apply: StateStore.dirty must be a dict");
        goto error;
    }
    NOTNULL(partition = PyObject_GetAttr(self, s_partition));
    CHECK(attr_i64(self, s_position, &position_max));
    CHECK(attr_i64(meta, s_stream_time, &st));
    wm = st == NONE ? NONE : st - lateness;
    wm_day = floordiv(wm, DAY_MS);

    Py_ssize_t n_messages = PyList_GET_SIZE(messages);
    for (Py_ssize_t mi = 0; mi < n_messages; mi++) {
        PyObject *msg = PyList_GET_ITEM(messages, mi);
        if (!PyTuple_Check(msg) || PyTuple_GET_SIZE(msg) != 4 || !PyList_Check(PyTuple_GET_ITEM(msg, 3))) {
            PyErr_SetString(PyExc_TypeError, "apply: a message must be (topic, offset, key, [events])");
            goto error;
        }
        PyObject *topic = PyTuple_GET_ITEM(msg, 0), *offset_obj = PyTuple_GET_ITEM(msg, 1);
        PyObject *msg_key = PyTuple_GET_ITEM(msg, 2), *events = PyTuple_GET_ITEM(msg, 3);
        int src = str_eq(topic, reroute);
        CHECK(src);
        long long offset;
        CHECK(i64(offset_obj, &offset));
        long long base = offset * MAX_BATCH;
        for (Py_ssize_t index = 0; index < PyList_GET_SIZE(events); index++) {
            PyObject *event = PyList_GET_ITEM(events, index);
            if (event == Py_None) continue;
            if (Py_TYPE(event) != EventType) {
                PyErr_SetString(PyExc_TypeError, "apply: events must be Event or None");
                goto error;
            }
            PyObject *ts_obj = slot(event, E_ts);
            long long ts;
            NOTNULL(ts_obj);
            CHECK(i64(ts_obj, &ts));
            long long prev_wm = wm;
            if (ts > st) {
                if (st == NONE) {
                    CHECK(set_attr_i64(meta, s_closed_day, floordiv(ts - lateness, DAY_MS) - 1));
                    CALL_M(self, s_set_next_day_end, "()");
                }
                CHECK(PyObject_SetAttr(meta, s_stream_time, ts_obj));
                st = ts;
                CHECK(PyObject_SetAttr(self, s_meta_dirty, Py_True));
                wm = ts - lateness;
                wm_day = floordiv(wm, DAY_MS);
                long long nde, ns, ni, nl;
                CHECK(attr_i64(self, s_next_day_end, &nde));
                CHECK(slot_i64(ix_short, D_next_at, &ns));
                CHECK(slot_i64(ix_inter, D_next_at, &ni));
                CHECK(slot_i64(ix_long, D_next_at, &nl));
                if (wm >= nde || wm >= ns || wm >= ni || wm >= nl) {
                    CHECK(day_store(state, &c));
                    if (moved) {
                        CHECK(end_run(self, dirty, &ixs, key, state, moved, off_events, off_reroute, run_short, run_long, run_inter));
                        moved = 0;
                    }
                    NOTNULL(tmp = PyLong_FromLongLong(position_max));
                    CHECK(PyObject_SetAttr(self, s_position, tmp));
                    Py_CLEAR(tmp);
                    CALL_M(self, s_advance, "(LO)", wm, out);
                    user_id = NULL; /* states may have been read again: look the user up afresh */
                }
            }
            PyObject *a = slot(event, E_app);
            NOTNULL(a);
            int same_app = rules_app != NULL && str_eq(a, rules_app);
            CHECK(same_app);
            if (!same_app) {
                if (rules_app != NULL) { /* outcomes are counted per app */
                    CALL_M(self, s_count, "(OOLLLL)", out, rules_app, accepted, late_events, duplicates, replayed);
                    accepted = late_events = duplicates = replayed = 0;
                }
                rules_app = a;
                Py_XSETREF(rules, PyObject_CallOneArg(rules_for, a));
                NOTNULL(rules);
                CHECK(attr_i64(rules, s_retention, &retention));
                CHECK(attr_i64(rules, s_horizon_s, &horizon_ms));
                horizon_ms *= 1000;
                CHECK(attr_i64(rules, s_burst, &burst));
                NOTNULL(tmp = call_method(rules_for, s_periods, "(O)", a));
                if (!PyArg_ParseTuple(tmp, "LLL", &short_ms, &long_ms, &inter_ms)) goto error;
                Py_CLEAR(tmp);
            }
            long long day = floordiv(ts, DAY_MS);
            if (day < wm_day - retention) {
                CALL_M(self, s_beyond_retention, "(OOnOOOL)", out, event, index, topic, offset_obj, msg_key,
                       retention);
                continue;
            }
            PyObject *u = slot(event, E_user);
            NOTNULL(u);
            int same_user = user_id != NULL && str_eq(u, user_id) && str_eq(a, app_id);
            CHECK(same_user);
            if (!same_user) {
                CHECK(day_store(state, &c));
                if (moved) {
                    CHECK(end_run(self, dirty, &ixs, key, state, moved, off_events, off_reroute, run_short, run_long, run_inter));
                    moved = 0;
                }
                app_id = a;
                user_id = u;
                run_short = short_ms, run_long = long_ms, run_inter = inter_ms;
                Py_XSETREF(key, make_user_key(a, u));
                NOTNULL(key);
                PyObject *found = PyDict_GetItemWithError(dirty, key); /* StateStore.get: a changed state */
                if (found != NULL) Py_INCREF(found);
                else if (PyErr_Occurred()) goto error;
                else NOTNULL(found = PyObject_CallOneArg(store_get, key)); /* decoded from the store, or None */
                if (found == Py_None) {
                    Py_DECREF(found);
                    Py_XSETREF(state, PyObject_CallOneArg((PyObject *)StateType, ts_obj));
                    NOTNULL(state);
                    moved = RUN_FIRST;
                    long long ni;
                    CHECK(slot_i64(ix_inter, D_next_at, &ni));
                    if (ts + inter_ms < ni)  /* see ``early`` below */
                        CHECK(set_deadlines(&ixs, key, state, moved, short_ms, long_ms, inter_ms));
                } else {
                    Py_XSETREF(state, found);
                }
                if (Py_TYPE(state) != StateType) {
                    PyErr_SetString(PyExc_TypeError, "apply: the store must hold UserState");
                    goto error;
                }
                PyObject *offs = slot(state, S_offsets);
                NOTNULL(offs);
                if (!PyArg_ParseTuple(offs, "LL", &off_events, &off_reroute)) goto error;
            }
            long long position = base + index;
            if (!src && position > position_max) position_max = position;
            NOTNULL(tmp = PyLong_FromLongLong(day));
            PyObject *day_obj = tmp; /* owned by tmp until the event is done */
            if (position <= (src ? off_reroute : off_events)) { /* replayed after a restart: in the state */
                replayed += 1;
                if (day != row_day || key != row_key) { /* re-write the row: the insert may have been lost */
                    NOTNULL(tmp2 = PyTuple_Pack(5, key, day_obj, a, u, partition));
                    CHECK(PyDict_SetItem(dirty_rows, tmp2, Py_None));
                    Py_CLEAR(tmp2);
                    Py_XSETREF(row_key, Py_NewRef(key));
                    row_day = day;
                }
                Py_CLEAR(tmp);
                continue;
            }
            if (src) off_reroute = position;
            else off_events = position;
            PyObject *id = slot(event, E_id);
            NOTNULL(id);
            Py_ssize_t id_len;
            const char *id_utf8 = PyUnicode_AsUTF8AndSize(id, &id_len); /* cached in the str, no copy for ASCII */
            NOTNULL(id_utf8);
            PyObject *h = PyLong_FromUnsignedLongLong(XXH3_64bits(id_utf8, (size_t)id_len));
            NOTNULL(h);
            tmp2 = h; /* owned */
            PyObject *ids = slot(state, S_ids);
            NOTNULL(ids);
            long long ids_base;
            CHECK(slot_i64(state, S_ids_base, &ids_base));
            PyObject *kept_obj = PyDict_GetItemWithError(ids, h);
            long long kept = 0;
            if (kept_obj == NULL) CHECK(PyErr_Occurred() ? -1 : 0);
            else CHECK(i64(kept_obj, &kept));
            if (kept_obj != NULL && kept + ids_base >= floordiv(wm - horizon_ms, HOUR_MS)) {
                /* decided: a replay skips it by position, not re-deciding it */
                duplicates += 1;
                moved |= RUN_CHANGED;
                if (day != row_day || key != row_key) {
                    Py_CLEAR(tmp2);
                    NOTNULL(tmp2 = PyTuple_Pack(5, key, day_obj, a, u, partition));
                    CHECK(PyDict_SetItem(dirty_rows, tmp2, Py_None));
                    Py_XSETREF(row_key, Py_NewRef(key));
                    row_day = day;
                }
                Py_CLEAR(tmp2);
                Py_CLEAR(tmp);
                continue;
            }
            moved |= RUN_APPLIED;
            int late = ts < prev_wm;
            if (late) late_events += 1;
            else accepted += 1;
            long long hour = floordiv(ts > wm ? ts : wm, HOUR_MS);
            if (PyDict_GET_SIZE(ids) == 0) {
                CHECK(slot_set_i64(state, S_ids_base, hour));
                ids_base = hour;
            }
            hour -= ids_base;
            if (kept_obj == NULL || kept < hour) {
                PyObject *hv = PyLong_FromLongLong(hour);
                NOTNULL(hv);
                int r = PyDict_SetItem(ids, h, hv);
                Py_DECREF(hv);
                CHECK(r);
            }
            Py_CLEAR(tmp2);
            /* ---- counters, episodes, burst minute, device observation */
            if (day != c.day) {
                CHECK(day_store(state, &c));
                CHECK(day_load(state, &c, day, day_obj));
            }
            c.n += 1;
            PyObject *etype = slot(event, E_type);
            NOTNULL(etype);
            long long counter;
            int excluded;
            CHECK(classify(etype, &counter, &excluded));
            int is_login = 0;
            if (counter == LOGINS) { c.logins += 1; is_login = 1; }
            else if (counter == PAYMENTS) {
                c.payments += 1;
                PyObject *amount = slot(event, E_amount);
                NOTNULL(amount);
                NOTNULL(tmp2 = PyObject_CallOneArg(f_to_micros, amount));
                PyObject *sum = PyNumber_Add(c.amount, tmp2);
                Py_CLEAR(tmp2);
                NOTNULL(sum);
                Py_SETREF(c.amount, sum);
            }
            else if (counter == POSTS) c.posts += 1;
            else if (counter == SOCIAL) c.social += 1;
            else if (counter != -1) c.complaints += 1;
            /* a deadline index is written at the run's end, unless the deadline would come before
               the earliest one indexed (``early``): the next stream-time step must see it */
            int early = 0;
            long long first_ts, ni, ns, nl, last;
            CHECK(slot_i64(state, S_first_ts, &first_ts));
            if (ts < first_ts) {
                slot_set(state, S_first_ts, Py_NewRef(ts_obj));
                moved |= RUN_FIRST;
                long long last_engage;
                CHECK(slot_i64(state, S_last_engage, &last_engage));
                if (last_engage == NONE) {
                    CHECK(slot_i64(ix_inter, D_next_at, &ni));
                    early = ts + inter_ms < ni;
                }
            }
            if (is_login) {
                long long o_short, o_long;
                CHECK(open_episode(state, O_SHORT, &o_short));
                CHECK(open_episode(state, O_LONG, &o_long));
                if (o_short != NONE || o_long != NONE) {
                    CALL_F(f_resolve, "OOOOOOL", alerts, state, ts_obj, Py_True, a, u, wm);
                    moved |= RUN_LOGIN;
                    early = 1;
                } else {
                    CHECK(slot_i64(state, S_last_login, &last));
                    if (ts > last) {
                        slot_set(state, S_last_login, Py_NewRef(ts_obj));
                        moved |= RUN_LOGIN;
                        CHECK(slot_i64(ix_short, D_next_at, &ns));
                        CHECK(slot_i64(ix_long, D_next_at, &nl));
                        if (ts + short_ms < ns || ts + long_ms < nl) early = 1;
                    }
                }
            } else {
                if (!excluded) {
                    long long o_inter;
                    CHECK(open_episode(state, O_INTER, &o_inter));
                    if (o_inter != NONE) {
                        CALL_F(f_resolve, "OOOOOOL", alerts, state, ts_obj, Py_False, a, u, wm);
                        moved |= RUN_ENGAGE;
                        early = 1;
                    } else {
                        CHECK(slot_i64(state, S_last_engage, &last));
                        if (ts > last) {
                            slot_set(state, S_last_engage, Py_NewRef(ts_obj));
                            moved |= RUN_ENGAGE;
                            CHECK(slot_i64(ix_inter, D_next_at, &ni));
                            if (ts + inter_ms < ni) early = 1;
                        }
                    }
                }
            }
            if (early) CHECK(set_deadlines(&ixs, key, state, moved, short_ms, long_ms, inter_ms));
            if (!late) {
                PyObject *minutes = slot(state, S_minutes);
                NOTNULL(minutes);
                NOTNULL(tmp2 = PyLong_FromLongLong(floordiv(ts, MINUTE_MS)));
                PyObject *cur = PyDict_GetItemWithError(minutes, tmp2);
                long long count = 0;
                if (cur == NULL) CHECK(PyErr_Occurred() ? -1 : 0);
                else CHECK(i64(cur, &count));
                count += 1;
                PyObject *cv = PyLong_FromLongLong(count);
                NOTNULL(cv);
                int r = PyDict_SetItem(minutes, tmp2, cv);
                Py_DECREF(cv);
                Py_CLEAR(tmp2);
                CHECK(r);
                if (count >= burst) CALL_F(f_burst, "OOOLOOOL", alerts, state, ts_obj, count, rules, a, u, wm);
            }
            long long last_active_day;
            CHECK(slot_i64(state, S_last_active_day, &last_active_day));
            if (day > last_active_day) {
                slot_set(state, S_last_active_day, Py_NewRef(day_obj));
                moved |= RUN_ACTIVE;
            }
            PyObject *device = slot(event, E_device);
            NOTNULL(device);
            if (device != Py_None && day >= wm_day - DEVICE_LATE_DAYS) {
                int repeat = day == obs_day;
                if (repeat) { repeat = str_eq(device, obs_device); CHECK(repeat); }
                if (repeat) { repeat = str_eq(u, obs_user); CHECK(repeat); }
                if (repeat) { repeat = str_eq(a, obs_app); CHECK(repeat); }
                if (!repeat) { /* the device stage counts distinct users: a repeat adds nothing */
                    NOTNULL(tmp2 = PyTuple_Pack(3, a, device, partition));
                    PyObject *obs = PyDict_GetItemWithError(device_obs, tmp2);
                    if (obs == NULL) {
                        CHECK(PyErr_Occurred() ? -1 : 0);
                        NOTNULL(obs = PyList_New(0));
                        int r = PyDict_SetItem(device_obs, tmp2, obs);
                        Py_DECREF(obs); /* the dict holds it */
                        CHECK(r);
                    }
                    Py_CLEAR(tmp2);
                    NOTNULL(tmp2 = PyTuple_Pack(3, day_obj, u, ts_obj));
                    CHECK(PyList_Append(obs, tmp2));
                    Py_CLEAR(tmp2);
                    obs_app = a; obs_device = device; obs_user = u; obs_day = day;
                }
            }
            if (day != row_day || key != row_key) {
                NOTNULL(tmp2 = PyTuple_Pack(5, key, day_obj, a, u, partition));
                CHECK(PyDict_SetItem(dirty_rows, tmp2, Py_None));
                Py_CLEAR(tmp2);
                Py_XSETREF(row_key, Py_NewRef(key));
                row_day = day;
            }
            Py_CLEAR(tmp);
        }
    }
    CHECK(day_store(state, &c));
    if (moved) CHECK(end_run(self, dirty, &ixs, key, state, moved, off_events, off_reroute, run_short, run_long, run_inter));
    NOTNULL(tmp = PyLong_FromLongLong(position_max));
    CHECK(PyObject_SetAttr(self, s_position, tmp));
    Py_CLEAR(tmp);
    if (rules_app != NULL)
        CALL_M(self, s_count, "(OOLLLL)", out, rules_app, accepted, late_events, duplicates, replayed);
    result = Py_NewRef(Py_None);
error:
    Py_XDECREF(c.amount);
    Py_XDECREF(rules_for); Py_XDECREF(meta); Py_XDECREF(store); Py_XDECREF(store_get); Py_XDECREF(reroute);
    Py_XDECREF(dirty_rows); Py_XDECREF(alerts); Py_XDECREF(device_obs); Py_XDECREF(deadlines);
    Py_XDECREF(ix_short); Py_XDECREF(ix_inter); Py_XDECREF(ix_long); Py_XDECREF(partition); Py_XDECREF(rules);
    Py_XDECREF(key); Py_XDECREF(state); Py_XDECREF(row_key); Py_XDECREF(tmp); Py_XDECREF(tmp2); Py_XDECREF(dirty);
    return result;
}

/* ---- the ClickHouse rows of a flush, as Native-format columns (sinks/columns.py) ----------- */

/* a growing byte buffer: one column's encoded values */
typedef struct { char *data; Py_ssize_t len, cap; } Buf;

static int buf_room(Buf *b, Py_ssize_t need) {
    if (b->len + need <= b->cap) return 0;
    Py_ssize_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + need) cap *= 2;
    char *p = PyMem_Realloc(b->data, (size_t)cap);
    if (p == NULL) { PyErr_NoMemory(); return -1; }
    b->data = p;
    b->cap = cap;
    return 0;
}

static inline void put_le(Buf *b, unsigned long long v, int width) { /* room reserved */
    for (int i = 0; i < width; i++) b->data[b->len++] = (char)(v >> (8 * i));
}

static int put_string(Buf *b, PyObject *s) { /* String: LEB128 length, UTF-8 bytes */
    if (!PyUnicode_Check(s)) {
        PyErr_SetString(PyExc_TypeError, "activity_columns: app and user ids must be str");
        return -1;
    }
    Py_ssize_t n;
    const char *utf8 = PyUnicode_AsUTF8AndSize(s, &n);
    if (utf8 == NULL || buf_room(b, n + 10) < 0) return -1;
    size_t v = (size_t)n;
    do {
        unsigned char byte = v & 0x7F;
        v >>= 7;
        b->data[b->len++] = (char)(v ? byte | 0x80 : byte);
    } while (v);
    memcpy(b->data + b->len, utf8, (size_t)n);
    b->len += n;
    return 0;
}

static int put_uint(Buf *b, PyObject *v, int width, unsigned long long max) { /* UInt64, Date (UInt16) */
    unsigned long long x = PyLong_AsUnsignedLongLong(v); /* OverflowError below 0, TypeError if not an int */
    if (x == (unsigned long long)-1 && PyErr_Occurred()) return -1;
    if (x > max) {
        PyErr_SetString(PyExc_OverflowError, "activity_columns: a value out of its column's range");
        return -1;
    }
    if (buf_room(b, width) < 0) return -1;
    put_le(b, x, width);
    return 0;
}

static int put_decimal128(Buf *b, PyObject *v) { /* Decimal(38, S) from an int scaled by 10^S: Int128 */
    if (!PyLong_Check(v)) {
        PyErr_SetString(PyExc_TypeError, "activity_columns: an amount must be an int");
        return -1;
    }
    if (buf_room(b, 16) < 0) return -1;
    int overflow;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (x == -1 && PyErr_Occurred()) return -1;
    if (!overflow) {
        put_le(b, (unsigned long long)x, 8);
        put_le(b, x < 0 ? ~0ULL : 0, 8);
        return 0;
    }
#if PY_VERSION_HEX >= 0x030D0000
    if (_PyLong_AsByteArray((PyLongObject *)v, (unsigned char *)b->data + b->len, 16, 1, 1, 1) < 0) return -1;
#else
    if (_PyLong_AsByteArray((PyLongObject *)v, (unsigned char *)b->data + b->len, 16, 1, 1) < 0) return -1;
#endif
    b->len += 16;
    return 0;
}

enum { C_APP, C_USER, C_DAY, C_EVENTS, N_COLUMNS = C_EVENTS + 7 }; /* then the day's 7 counters */

static PyObject *activity_columns(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) return PyErr_Format(PyExc_TypeError, "activity_columns(dirty_rows, dirty, lookup)");
    if (StateType == NULL) return PyErr_Format(PyExc_RuntimeError, "vitals._engine: configure() first");
    PyObject *dirty_rows = args[0], *dirty = args[1], *lookup = args[2];
    if (!PyDict_Check(dirty_rows) || !PyDict_Check(dirty))
        return PyErr_Format(PyExc_TypeError, "activity_columns: a dict of rows and a dict of changed states");
    Buf cols[N_COLUMNS] = {{0}};
    PyObject *item, *unused, *owned = NULL, *result = NULL;
    Py_ssize_t rows = 0, pos = 0;
    while (PyDict_Next(dirty_rows, &pos, &item, &unused)) { /* in the order the rows changed */
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 5) {
            PyErr_SetString(PyExc_TypeError, "activity_columns: a row must be (key, day, app_id, user_id, partition)");
            goto error;
        }
        PyObject *key = PyTuple_GET_ITEM(item, 0), *day = PyTuple_GET_ITEM(item, 1);
        PyObject *changed = PyDict_GetItemWithError(dirty, PyTuple_GET_ITEM(item, 4)); /* the partition's */
        PyObject *state = NULL;
        if (changed != NULL) {
            if (!PyDict_Check(changed)) {
                PyErr_SetString(PyExc_TypeError, "activity_columns: changed states must be dicts");
                goto error;
            }
            state = PyDict_GetItemWithError(changed, key);
        }
        if (state == NULL) {
            if (PyErr_Occurred()) goto error;
            /* unchanged (a replayed event re-writes its row): read it */
            NOTNULL(owned = PyObject_CallFunctionObjArgs(lookup, key, PyTuple_GET_ITEM(item, 4), NULL));
            if (owned == Py_None) {
                Py_CLEAR(owned);
                continue;
            }
            state = owned;
        }
        if (Py_TYPE(state) != StateType) {
            PyErr_SetString(PyExc_TypeError, "activity_columns: states must be UserState");
            goto error;
        }
        PyObject *days = slot(state, S_days);
        NOTNULL(days);
        PyObject *counters = PyDict_GetItemWithError(days, day);
        if (counters == NULL) {
            if (PyErr_Occurred()) goto error;
        } else {
            if (!PyTuple_Check(counters) || PyTuple_GET_SIZE(counters) != N_COLUMNS - C_EVENTS) {
                PyErr_SetString(PyExc_TypeError, "activity_columns: a day's counters must be a tuple of 7");
                goto error;
            }
            CHECK(put_string(&cols[C_APP], PyTuple_GET_ITEM(item, 2)));
            CHECK(put_string(&cols[C_USER], PyTuple_GET_ITEM(item, 3)));
            CHECK(put_uint(&cols[C_DAY], day, 2, 0xFFFF));
            for (int i = 0; i < N_COLUMNS - C_EVENTS; i++) {
                PyObject *v = PyTuple_GET_ITEM(counters, i);
                CHECK(i == 3 ? put_decimal128(&cols[C_EVENTS + i], v) : put_uint(&cols[C_EVENTS + i], v, 8, ~0ULL));
            }
            rows += 1;
        }
        Py_CLEAR(owned);
    }
    NOTNULL(result = PyTuple_New(1 + N_COLUMNS));
    PyTuple_SET_ITEM(result, 0, PyLong_FromSsize_t(rows));
    NOTNULL(PyTuple_GET_ITEM(result, 0));
    for (int i = 0; i < N_COLUMNS; i++) {
        PyObject *b = PyBytes_FromStringAndSize(cols[i].data ? cols[i].data : "", cols[i].len);
        NOTNULL(b);
        PyTuple_SET_ITEM(result, 1 + i, b);
    }
    for (int i = 0; i < N_COLUMNS; i++) PyMem_Free(cols[i].data);
    return result;
error:
    for (int i = 0; i < N_COLUMNS; i++) PyMem_Free(cols[i].data);
    Py_XDECREF(owned); Py_XDECREF(result);
    return NULL;
}

/* ---- the changed states of a flush (StateStore.drain, UserState.prune_below) --------------- */

/* the smallest key (by_key) or value of an int-keyed dict of ints: 1, or 0 when it is empty */
static int dict_min(PyObject *d, int by_key, long long *out) {
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    int any = 0;
    long long x;
    while (PyDict_Next(d, &pos, &k, &v)) {
        if (i64(by_key ? k : v, &x) < 0) return -1;
        if (!any || x < *out) *out = x;
        any = 1;
    }
    return any;
}

/* the items of d whose key (by_key) or value is >= floor, in order, values less ``shift`` */
static PyObject *dict_from(PyObject *d, int by_key, long long floor, long long shift) {
    PyObject *out = PyDict_New(), *k, *v;
    if (out == NULL) return NULL;
    Py_ssize_t pos = 0;
    long long x;
    while (PyDict_Next(d, &pos, &k, &v)) {
        if (i64(by_key ? k : v, &x) < 0) goto error;
        if (x < floor) continue;
        int r;
        if (shift != 0) {
            PyObject *nv = PyLong_FromLongLong(x - shift); /* by value only */
            if (nv == NULL) goto error;
            r = PyDict_SetItem(out, k, nv);
            Py_DECREF(nv);
        } else r = PyDict_SetItem(out, k, v);
        if (r < 0) goto error;
    }
    return out;
error:
    Py_DECREF(out);
    return NULL;
}

static int dict_slot(PyObject *state, Py_ssize_t off, PyObject **out) {
    *out = slot(state, off);
    if (*out == NULL) return -1;
    if (!PyDict_Check(*out)) {
        PyErr_SetString(PyExc_TypeError, "vitals._engine: a UserState map must be a dict");
        return -1;
    }
    return 0;
}

static int prune_below(PyObject *state, long long day, long long hour, long long minute, long long burst_day) {
    PyObject *d, *kept;
    long long m = 0;
    int any;
    if (dict_slot(state, S_days, &d) < 0 || (any = dict_min(d, 1, &m)) < 0) return -1;
    if (any && m < day) {
        if ((kept = dict_from(d, 1, day, 0)) == NULL) return -1;
        slot_set(state, S_days, kept);
    }
    if (dict_slot(state, S_ids, &d) < 0 || (any = dict_min(d, 0, &m)) < 0) return -1;
    if (any) {
        long long base;
        if (slot_i64(state, S_ids_base, &base) < 0) return -1;
        long long oldest = hour - base;
        if (m < oldest) {
            if ((kept = dict_from(d, 0, oldest, 0)) == NULL) return -1;
            long long shift = 0;
            int left = dict_min(kept, 0, &shift);
            if (left < 0) {
                Py_DECREF(kept);
                return -1;
            }
            if (!left) shift = 0;
            if (shift >= 64) { /* rebase now and then: the numbers stay small */
                PyObject *rebased = dict_from(kept, 0, shift, shift);
                Py_DECREF(kept);
                if (rebased == NULL || slot_set_i64(state, S_ids_base, base + shift) < 0) {
                    Py_XDECREF(rebased);
                    return -1;
                }
                kept = rebased;
            }
            slot_set(state, S_ids, kept);
        }
    }
    if (dict_slot(state, S_minutes, &d) < 0 || (any = dict_min(d, 1, &m)) < 0) return -1;
    if (any && m < minute) {
        if ((kept = dict_from(d, 1, minute, 0)) == NULL) return -1;
        slot_set(state, S_minutes, kept);
    }
    PyObject *bd = slot(state, S_burst_days);
    if (bd == NULL) return -1;
    if (!PyTuple_Check(bd)) {
        PyErr_SetString(PyExc_TypeError, "vitals._engine: UserState.burst_days must be a tuple");
        return -1;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(bd), n_kept = 0;
    int drop = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (i64(PyTuple_GET_ITEM(bd, i), &m) < 0) return -1;
        if (m < burst_day) drop = 1;
        else n_kept++;
    }
    if (drop) {
        PyObject *t = PyTuple_New(n_kept);
        if (t == NULL) return -1;
        for (Py_ssize_t i = 0, j = 0; i < n; i++) {
            PyObject *item = PyTuple_GET_ITEM(bd, i);
            if (i64(item, &m) < 0) {
                Py_DECREF(t);
                return -1;
            }
            if (m >= burst_day) PyTuple_SET_ITEM(t, j++, Py_NewRef(item));
        }
        slot_set(state, S_burst_days, t);
    }
    return 0;
}

static PyObject *drain(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    /* drain(dirty, data, position, cutoffs | None, encode): StateStore.drain's loop */
    if (nargs != 5 || !PyDict_Check(args[0]))
        return PyErr_Format(PyExc_TypeError, "drain(dirty: dict, data, position, cutoffs, encode)");
    if (StateType == NULL) return PyErr_Format(PyExc_RuntimeError, "vitals._engine: configure() first");
    PyObject *dirty = args[0], *data = args[1], *position = args[2], *cutoffs = args[3], *encode = args[4];
    long long cut[4] = {0, 0, 0, 0};
    int prune = cutoffs != Py_None;
    if (prune) {
        if (!PyTuple_Check(cutoffs) || PyTuple_GET_SIZE(cutoffs) != 4)
            return PyErr_Format(PyExc_TypeError, "drain: cutoffs must be (day, hour, minute, burst day) or None");
        for (int i = 0; i < 4; i++)
            if (i64(PyTuple_GET_ITEM(cutoffs, i), &cut[i]) < 0) return NULL;
    }
    PyObject *out = PyList_New(0), *key, *state;
    if (out == NULL) return NULL;
    Py_ssize_t pos = 0;
    while (PyDict_Next(dirty, &pos, &key, &state)) {
        if (Py_TYPE(state) != StateType) {
            PyErr_SetString(PyExc_TypeError, "drain: states must be UserState");
            goto error;
        }
        slot_set(state, S_persisted_at, Py_NewRef(position));
        if (prune) CHECK(prune_below(state, cut[0], cut[1], cut[2], cut[3]));
        PyObject *raw = PyObject_CallOneArg(encode, state);
        NOTNULL(raw);
        PyObject *pair = PyTuple_Pack(2, key, raw);
        int r = pair == NULL ? -1 : PyObject_SetItem(data, key, raw);
        Py_DECREF(raw);
        if (r == 0) r = PyList_Append(out, pair);
        Py_XDECREF(pair);
        CHECK(r);
    }
    PyDict_Clear(dirty);
    return out;
error:
    Py_DECREF(out);
    return NULL;
}

/* ---- Kafka's default partitioner ---------------------------------------------------------- */

static uint32_t murmur2_32(const unsigned char *data, Py_ssize_t length) {
    /* Kafka's murmur2 (as the Java client and aiokafka compute it), unsigned */
    const uint32_t m = 0x5bd1e995;
    uint32_t h = 0x9747b28c ^ (uint32_t)length;
    Py_ssize_t words = length >> 2;
    for (Py_ssize_t i = 0; i < words; i++) {
        const unsigned char *w = data + 4 * i;
        uint32_t k = (uint32_t)w[0] | ((uint32_t)w[1] << 8) | ((uint32_t)w[2] << 16) | ((uint32_t)w[3] << 24);
        k *= m;
        k ^= k >> 24;
        k *= m;
        h *= m;
        h ^= k;
    }
    const unsigned char *tail = data + 4 * words;
    switch (length & 3) {
        case 3: h ^= (uint32_t)tail[2] << 16; /* fall through */
        case 2: h ^= (uint32_t)tail[1] << 8; /* fall through */
        case 1: h ^= tail[0]; h *= m;
    }
    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return h;
}

static PyObject *murmur2(PyObject *mod, PyObject *arg) {
    if (!PyBytes_Check(arg)) return PyErr_Format(PyExc_TypeError, "murmur2: bytes expected");
    return PyLong_FromUnsignedLong(murmur2_32((const unsigned char *)PyBytes_AS_STRING(arg), PyBytes_GET_SIZE(arg)));
}

static inline long home_of(const char *utf8, Py_ssize_t size, long partitions) { /* Kafka's default partitioner */
    return (long)((murmur2_32((const unsigned char *)utf8, size) & 0x7fffffff) % (uint32_t)partitions);
}

static PyObject *home_partition(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    /* home_partition(user_id: str, partitions: int): murmur2 of its UTF-8 bytes, as Kafka's default partitioner */
    if (nargs != 2 || !PyUnicode_Check(args[0])) return PyErr_Format(PyExc_TypeError, "home_partition(str, int)");
    long partitions = PyLong_AsLong(args[1]);
    if (partitions == -1 && PyErr_Occurred()) return NULL;
    if (partitions < 1) return PyErr_Format(PyExc_ValueError, "home_partition: partitions must be >= 1");
    Py_ssize_t size;
    const char *utf8 = PyUnicode_AsUTF8AndSize(args[0], &size);
    if (utf8 == NULL) return NULL;
    return PyLong_FromLong(home_of(utf8, size, partitions));
}

static PyObject *elsewhere(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    /* elsewhere(events, partition, partitions): PartitionCache.elsewhere's loop */
    if (nargs != 3 || !PyList_Check(args[0]))
        return PyErr_Format(PyExc_TypeError, "elsewhere(events: list, partition, partitions)");
    if (EventType == NULL) return PyErr_Format(PyExc_RuntimeError, "vitals._engine: configure() first");
    long partition = PyLong_AsLong(args[1]), partitions = PyLong_AsLong(args[2]);
    if ((partition == -1 || partitions == -1) && PyErr_Occurred()) return NULL;
    if (partitions < 1) return PyErr_Format(PyExc_ValueError, "elsewhere: partitions must be >= 1");
    PyObject *events = args[0], *out = NULL, *user = NULL; /* user: borrowed from the events */
    long p = partition;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(events); i++) {
        PyObject *event = PyList_GET_ITEM(events, i);
        if (event == Py_None) continue;
        if (Py_TYPE(event) != EventType) {
            PyErr_SetString(PyExc_TypeError, "elsewhere: events must be Event or None");
            goto error;
        }
        PyObject *u = slot(event, E_user);
        NOTNULL(u);
        int same = str_eq(u, user);
        CHECK(same);
        if (!same) {
            Py_ssize_t size;
            const char *utf8 = PyUnicode_AsUTF8AndSize(u, &size); /* TypeError if not a str */
            NOTNULL(utf8);
            p = home_of(utf8, size, partitions);
            user = u;
        }
        if (p != partition) {
            if (out == NULL) NOTNULL(out = PyList_New(0));
            PyObject *pair = Py_BuildValue("(nl)", i, p);
            NOTNULL(pair);
            int r = PyList_Append(out, pair);
            Py_DECREF(pair);
            CHECK(r);
        }
    }
    return out != NULL ? out : PyList_New(0);
error:
    Py_XDECREF(out);
    return NULL;
}

static PyMethodDef methods[] = {
    {"drain", (PyCFunction)(void (*)(void))drain, METH_FASTCALL,
     "drain(dirty, data, position, cutoffs, encode): StateStore.drain's loop"},
    {"elsewhere", (PyCFunction)(void (*)(void))elsewhere, METH_FASTCALL,
     "elsewhere(events, partition, partitions): (index, home) of the events whose user lives elsewhere"},
    {"murmur2", (PyCFunction)murmur2, METH_O, "Kafka's murmur2 of bytes (unsigned 32 bits)."},
    {"home_partition", (PyCFunction)(void (*)(void))home_partition, METH_FASTCALL,
     "home_partition(user_id, partitions): Kafka's default partitioner on the id's UTF-8 bytes."},
    {"configure", (PyCFunction)configure, METH_O, "Set the struct types, constants and callbacks."},
    {"apply", (PyCFunction)(void (*)(void))apply, METH_FASTCALL, "apply(partition, messages, out)"},
    {"activity_columns", (PyCFunction)(void (*)(void))activity_columns, METH_FASTCALL,
     "activity_columns(dirty_rows, dirty, lookup): (rows, *columns), the Native-format columns of "
     "store.activity_rows"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "streams._engine", NULL, -1, methods};

PyMODINIT_FUNC PyInit__engine(void) {
#define INTERN(var, text) if ((var = PyUnicode_InternFromString(text)) == NULL) return NULL
    INTERN(s_rules, "rules"); INTERN(s_meta, "meta"); INTERN(s_store, "store"); INTERN(s_reroute_topic, "reroute_topic");
    INTERN(s_dirty_rows, "dirty_rows"); INTERN(s_alerts, "alerts"); INTERN(s_device_obs, "device_obs");
    INTERN(s_deadlines, "deadlines"); INTERN(s_partition, "partition"); INTERN(s_position, "position");
    INTERN(s_stream_time, "stream_time"); INTERN(s_closed_day, "closed_day"); INTERN(s_meta_dirty, "meta_dirty");
    INTERN(s_next_day_end, "next_day_end"); INTERN(s_lateness_ms, "lateness_ms");
    INTERN(s_retention, "retention_days_needed"); INTERN(s_horizon_s, "dedup_horizon_s");
    INTERN(s_burst, "burst_events_per_minute"); INTERN(s_periods, "periods"); INTERN(s_get, "get");
    INTERN(s_set_next_day_end, "_set_next_day_end"); INTERN(s_advance, "advance");
    INTERN(s_count, "_count"); INTERN(s_compact, "_compact"); INTERN(s_touched, "touched");
    INTERN(s_dirty, "dirty"); INTERN(s_last_active, "last_active");
    INTERN(s_beyond_retention, "_beyond_retention");
#undef INTERN
    return PyModule_Create(&module);
}
