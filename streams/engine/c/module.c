/* The per-event loop of streams/engine/partition.py's UserPartition.apply, in C.
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
 *
 * Loaded and configured once, by streams/engine/extensions.py (the facade: every constant, type and
 * callback below comes from Python through configure(); processing.native_engine picks C or Python).
 *
 *   C file          Python twin (the same algorithm)                       test comparing them (tests/unit/)
 *   module.c        streams/engine/extensions.py (configure), firing.py    test_extensions.py (ATTRIBUTES below)
 *   apply.c         partition.py UserPartition._apply_py                   test_engine_native.py, test_hot_keys.py
 *   run.c           partition.py _end_run, indexes.py DeadlineIndex.set,   test_engine_native.py
 *                   state.py user_key
 *   columns.c       store.py activity_rows, sinks/columns.py ActivityColumns test_sinks.py, test_engine_native.py
 *   drain.c         store.py StateStore.drain                              test_engine_native.py
 *   partitioner.c   partitioner.py murmur2_32_py, PartitionCache           test_partitioner.py
 *   segments.c      segments.py visit (window_sums, the decisions, make_change) test_segments_engine.py
 *   (schemas/_decode.c, the decoder's first pass: schemas/events.py _decode_fast; test_decode_native.py)
 *
 * What they hold: module.c (this: the configuration and the module), apply.c (the loop), run.c (what a
 * run of one user's events writes: the day's counters, the absence deadlines, the run's end),
 * columns.c (a flush's ClickHouse rows as Native columns), drain.c (a flush's changed states),
 * partitioner.c (Kafka's murmur2 partitioner, the routing's search for mis-keyed events), segments.c (a day
 * close's visit of a user's segments: the windows over their days, whether a segment changes and the change
 * records, with schemas.segments.change_id's BLAKE2b).
 */
#include "engine.h"

/* ---- configuration (configure()) ---------------------------------------------------------- */
PyTypeObject *EventType, *StateType, *DeadlineType, *LastActiveType;
Py_ssize_t D_deadline, D_heap, D_next_at, L_by_day, L_day_of;
PyObject *f_heappush;
Py_ssize_t E_ts, E_app, E_user, E_id, E_type, E_device, E_amount;
Py_ssize_t S_first_ts, S_last_login, S_last_engage, S_days, S_ids, S_minutes, S_open, S_last_active_day,
    S_offsets, S_ids_base, S_burst_days, S_persisted_at, S_sealed, S_seg;
PyObject *f_to_micros, *f_resolve, *f_burst, *type_counter, *engagement_excluded,
    *no_counts;
PyObject *s_rules, *s_meta, *s_store, *s_reroute_topic, *s_dirty_rows, *s_alerts, *s_device_obs,
    *s_deadlines, *s_partition, *s_position, *s_stream_time, *s_closed_day, *s_meta_dirty, *s_next_day_end,
    *s_lateness_ms, *s_skew_ms, *s_sealed_seen, *s_retention, *s_horizon_s, *s_burst, *s_periods, *s_get, *s_set_next_day_end,
    *s_advance, *s_count, *s_cold_event, *s_convert, *s_compact, *s_touched, *s_dirty, *s_last_active, *k_short,
    *k_inter, *k_long, *k_recall;
long long LOGINS, PAYMENTS, POSTS, SOCIAL, DAY_MS, HOUR_MS, MINUTE_MS, MAX_BATCH, DEVICE_LATE_DAYS,
    RUN_CHANGED, RUN_APPLIED, RUN_LOGIN, RUN_ENGAGE, RUN_FIRST, RUN_ACTIVE, O_SHORT, O_INTER, O_LONG, HEAP_SLACK,
    HIGH_POTENTIAL, NEW, RETURNING, RESURRECTING, DORMANT, CHURNED, V_NONE, V_LOW, V_MID, V_HIGH;
char KEY_SEP;

/* Every attribute the C code reads, writes or calls by name, interned at import, and the Python object it
   is on (exported as ATTRIBUTES: tests/unit/test_extensions.py checks each exists there). */
static const struct {
    PyObject **var;
    const char *name, *owner;
} NAMES[] = {
    {&s_rules, "rules", "UserPartition"}, {&s_meta, "meta", "UserPartition"}, {&s_store, "store", "UserPartition"},
    {&s_reroute_topic, "reroute_topic", "UserPartition"}, {&s_deadlines, "deadlines", "UserPartition"},
    {&s_partition, "partition", "UserPartition"}, {&s_position, "position", "UserPartition"},
    {&s_meta_dirty, "meta_dirty", "UserPartition"}, {&s_next_day_end, "next_day_end", "UserPartition"},
    {&s_sealed_seen, "_sealed_seen", "UserPartition"}, {&s_set_next_day_end, "_set_next_day_end", "UserPartition"},
    {&s_advance, "advance", "UserPartition"}, {&s_count, "_count", "UserPartition"},
    {&s_cold_event, "_cold_event", "UserPartition"}, {&s_convert, "_convert", "UserPartition"}, {&s_touched, "touched", "UserPartition"},
    {&s_last_active, "last_active", "UserPartition"},
    {&s_dirty_rows, "dirty_rows", "Outputs"}, {&s_alerts, "alerts", "Outputs"}, {&s_device_obs, "device_obs", "Outputs"},
    {&s_stream_time, "stream_time", "PartitionMeta"}, {&s_closed_day, "closed_day", "PartitionMeta"},
    {&s_lateness_ms, "lateness_ms", "RulesByApp"}, {&s_skew_ms, "skew_ms", "RulesByApp"},
    {&s_periods, "periods", "RulesByApp"},
    {&s_retention, "retention_days_needed", "RuleSettings"}, {&s_horizon_s, "dedup_horizon_s", "RuleSettings"},
    {&s_burst, "burst_events_per_minute", "RuleSettings"},
    {&s_get, "get", "StateStore"}, {&s_dirty, "dirty", "StateStore"},
    {&s_compact, "_compact", "DeadlineIndex"},
};
#define N_NAMES ((Py_ssize_t)(sizeof(NAMES) / sizeof(NAMES[0])))

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
        PyErr_Format(PyExc_KeyError, "streams.engine._engine.configure: missing %s", name);
        return -1;
    }
    return i64(v, out);
}

static int const_obj(PyObject *consts, const char *name, PyObject **out) {
    PyObject *v = PyDict_GetItemString(consts, name);
    if (v == NULL) {
        PyErr_Format(PyExc_KeyError, "streams.engine._engine.configure: missing %s", name);
        return -1;
    }
    Py_INCREF(v);
    Py_XSETREF(*out, v);
    return 0;
}

static int build_type_table(void);

PyObject *configure(PyObject *mod, PyObject *consts) {
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
    OFF(S_persisted_at, StateType, "persisted_at"); OFF(S_sealed, StateType, "sealed");
    OFF(S_seg, StateType, "seg");
    OFF(D_deadline, DeadlineType, "_deadline"); OFF(D_heap, DeadlineType, "_heap");
    OFF(D_next_at, DeadlineType, "next_at"); OFF(L_by_day, LastActiveType, "_by_day");
    OFF(L_day_of, LastActiveType, "_day_of");
#undef OFF
#define CI(var) if (const_i64(consts, #var, &var) < 0) return NULL
    CI(LOGINS); CI(PAYMENTS); CI(POSTS); CI(SOCIAL); CI(DAY_MS); CI(HOUR_MS); CI(MINUTE_MS); CI(MAX_BATCH);
    CI(DEVICE_LATE_DAYS); CI(RUN_CHANGED); CI(RUN_APPLIED); CI(RUN_LOGIN); CI(RUN_ENGAGE); CI(RUN_FIRST);
    CI(RUN_ACTIVE); CI(O_SHORT); CI(O_INTER); CI(O_LONG); CI(HEAP_SLACK);
    CI(HIGH_POTENTIAL); CI(NEW); CI(RETURNING); CI(RESURRECTING); CI(DORMANT); CI(CHURNED); CI(V_NONE);
    CI(V_LOW); CI(V_MID); CI(V_HIGH);
#undef CI
    PyObject *sep = PyDict_GetItemString(consts, "KEY_SEP");
    if (sep == NULL || !PyUnicode_Check(sep) || PyUnicode_GET_LENGTH(sep) != 1 || PyUnicode_READ_CHAR(sep, 0) >= 0x80)
        return PyErr_Format(PyExc_ValueError, "streams.engine._engine.configure: KEY_SEP must be one ASCII character");
    KEY_SEP = (char)PyUnicode_READ_CHAR(sep, 0);
    if (const_i64(consts, "NONE", &(long long){0}) < 0 || PyLong_AsLongLong(PyDict_GetItemString(consts, "NONE"))
        != NONE) return PyErr_Format(PyExc_ValueError, "configure: NONE must be -1");
#define CO(var, name) if (const_obj(consts, name, &var) < 0) return NULL
    CO(f_to_micros, "to_micros");
    CO(f_resolve, "resolve"); CO(f_burst, "burst_alert"); CO(type_counter, "TYPE_COUNTER");
    CO(engagement_excluded, "ENGAGEMENT_EXCLUDED"); CO(no_counts, "NO_COUNTS");
    CO(f_heappush, "heappush"); CO(k_short, "NO_LOGIN_SHORT"); CO(k_inter, "NO_INTERACTION"); CO(k_long, "NO_LOGIN_LONG");
    CO(k_recall, "RECALL_STEP");
#undef CO
    if (!PyDict_Check(type_counter) || !PyAnySet_Check(engagement_excluded) || !PyTuple_Check(no_counts)
        || PyTuple_GET_SIZE(no_counts) != 7)
        return PyErr_Format(PyExc_TypeError, "configure: bad TYPE_COUNTER, ENGAGEMENT_EXCLUDED or NO_COUNTS");
    if (build_type_table() < 0 || segments_configure(consts) < 0) return NULL;
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

int classify(PyObject *etype, long long *counter, int *excluded) {
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
    {"segment_visit", (PyCFunction)(void (*)(void))segment_visit, METH_FASTCALL,
     "segment_visit(days, first_ts, seg, day, params, key, wm): segments.visit (the next change day; the new "
     "segments, the next change day and the SegmentChange records when a segment changes; None: an amount "
     "beyond 64 bits)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "streams.engine._engine", NULL, -1, methods};

PyMODINIT_FUNC PyInit__engine(void) {
    PyObject *attributes = PyTuple_New(N_NAMES);
    if (attributes == NULL) return NULL;
    for (Py_ssize_t i = 0; i < N_NAMES; i++) {
        if ((*NAMES[i].var = PyUnicode_InternFromString(NAMES[i].name)) == NULL) goto fail;
        PyObject *pair = Py_BuildValue("(ss)", NAMES[i].name, NAMES[i].owner);
        if (pair == NULL) goto fail;
        PyTuple_SET_ITEM(attributes, i, pair);
    }
    PyObject *mod = PyModule_Create(&module);
    if (mod == NULL || PyModule_AddObject(mod, "ATTRIBUTES", attributes) < 0) {
        Py_XDECREF(mod);
        goto fail;
    }
    return mod;
fail:
    Py_DECREF(attributes);
    return NULL;
}
