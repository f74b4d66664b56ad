/* The first decoder of schemas/events.py's decode_message, in C: an event message straight into
 * Event structs, for messages written the way producers write them.
 *
 * It decides only what it can decide exactly as the reference decoder would, and returns None for
 * everything else (then msgspec's typed decoder, then the reference, decide as before). So it
 * accepts a strict subset of valid messages: an event object or a non-empty array of them, with
 * no key but the eight fields, none twice, strings without escapes or control characters (UTF-8
 * checked), ``ts`` a plain integer in range, ``amount`` a non-negative JSON number up to the
 * maximum (not 0 in a payment), ``props`` an object decoded by the same msgspec decoder the typed
 * path uses (and, as there, no integer that orjson would read as a float), and the size limits of
 * SPEC section 1. A field's limits and the other constants come from Python (configure()).
 *
 * What it saves: msgspec makes a new str for every string of every event; here the values that
 * repeat (a message's user, its app and device, the event types) are made once and shared.
 *
 * Its Python twin: schemas/events.py, _decode_fast (msgspec's typed decoder and the same checks), then
 * decode_message_reference; tests/unit/test_decode_native.py compares them. Loaded and configured once
 * by streams/engine/extensions.py (the constants: schemas.events.decoder_constants), which hands its
 * decode() to decode_message where processing.native_engine asks for it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>
#include <structmember.h>

enum { F_ID, F_USER, F_TYPE, F_TS, F_APP, F_DEVICE, F_AMOUNT, F_PROPS, N_FIELDS };
static const char *const FIELD_NAMES[N_FIELDS] = {"event_id", "user_id", "type", "ts",
                                                  "app_id", "device_id", "amount", "props"};
#define REQUIRED ((1u << F_ID) | (1u << F_USER) | (1u << F_TYPE) | (1u << F_TS))

static PyTypeObject *EventType;
static PyObject *props_fn, *default_app, *zero_amount;
static Py_ssize_t offsets[N_FIELDS]; /* of the Event struct's fields */
static Py_ssize_t limits[N_FIELDS]; /* most characters of each string field */
static long long MIN_TS_MS, MAX_FUTURE_MS, MAX_EVENT_BYTES, MAX_BATCH_EVENTS;
static double MAX_AMOUNT;
static int configured;

/* Strs that repeat, made once: the last value of each of user, app and device (a message is
   usually one user's), and up to CACHE_TYPES event types. */
#define CACHE_TYPES 32
static PyObject *last[N_FIELDS];
static PyObject *types[CACHE_TYPES];
static int n_types;

typedef enum { BAIL = 0, OK = 1, ERROR = -1 } result;

typedef struct {
    const unsigned char *p, *end;
} cursor;

static void ws_run(cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\n' || *c->p == '\r' || *c->p == '\t')) c->p++;
}

static inline void ws(cursor *c) { /* compact JSON has none: one test */
    if (c->p < c->end && *c->p <= ' ') ws_run(c);
}

static inline int at(cursor *c, unsigned char ch) {
    return c->p < c->end && *c->p == ch;
}

/* Bytes a string scan stops at: the closing quote, an escape, a control character (not JSON in a
   string), and any byte of a multi-byte character (then the string is checked as UTF-8). */
static unsigned char STOP[256];

static void init_tables(void) {
    for (int ch = 0; ch < 256; ch++) STOP[ch] = ch == '"' || ch == '\\' || ch < 0x20 || ch >= 0x80;
}

/* A string's bytes (after its opening quote) up to the closing quote; BAIL on an escape, a control
   character or the end. *ascii: whether every byte is ASCII. */
static inline result string_span(cursor *c, const unsigned char **start, Py_ssize_t *len, int *ascii) {
    const unsigned char *s = c->p, *p = c->p, *end = c->end;
    int high = 0;
    for (;;) {
        while (p < end && !STOP[*p]) p++;
        if (p >= end || *p == '\\' || *p < 0x20) return BAIL;
        if (*p == '"') break;
        high = 1; /* >= 0x80 */
        p++;
    }
    *start = s;
    *len = p - s;
    *ascii = !high;
    c->p = p + 1;
    return OK;
}

static inline int same_ascii(PyObject *s, const unsigned char *b, Py_ssize_t n) {
    return s != NULL && PyUnicode_IS_COMPACT_ASCII(s) && PyUnicode_GET_LENGTH(s) == n &&
           memcmp(PyUnicode_DATA(s), b, (size_t)n) == 0;
}

static PyObject *ascii_str(const unsigned char *b, Py_ssize_t n) {
    PyObject *s = PyUnicode_New(n, 127);
    if (s != NULL) memcpy(PyUnicode_DATA(s), b, (size_t)n);
    return s;
}

/* A string field's value as a new reference; NULL with no exception set: BAIL. */
static PyObject *string_value(cursor *c, int field) {
    const unsigned char *b;
    Py_ssize_t n;
    int ascii;
    if (!at(c, '"')) return NULL;
    c->p++;
    if (string_span(c, &b, &n, &ascii) != OK) return NULL;
    if (!ascii) { /* strict UTF-8; the limit counts characters, as len() does */
        PyObject *s = PyUnicode_DecodeUTF8((const char *)b, n, "strict");
        if (s == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) return NULL;
            PyErr_Clear();
            return NULL;
        }
        Py_ssize_t chars = PyUnicode_GET_LENGTH(s);
        if (chars < 1 || chars > limits[field]) {
            Py_DECREF(s);
            return NULL;
        }
        return s;
    }
    if (n < 1 || n > limits[field]) return NULL;
    if (field == F_ID) return ascii_str(b, n);
    if (field == F_TYPE) {
        for (int i = 0; i < n_types; i++)
            if (same_ascii(types[i], b, n)) return Py_NewRef(types[i]);
        PyObject *s = ascii_str(b, n);
        if (s != NULL && n_types < CACHE_TYPES) types[n_types++] = Py_NewRef(s);
        return s;
    }
    if (same_ascii(last[field], b, n)) return Py_NewRef(last[field]);
    PyObject *s = ascii_str(b, n);
    if (s != NULL) Py_XSETREF(last[field], Py_NewRef(s));
    return s;
}

static inline int is_digit(cursor *c) {
    return c->p < c->end && *c->p >= '0' && *c->p <= '9';
}

/* ``ts``: a JSON integer (no fraction, no exponent) of at most 18 digits; range checked by the caller. */
static inline result ts_value(cursor *c, long long *out) {
    const unsigned char *p = c->p, *end = c->end;
    const unsigned char *lim = end - p > 18 ? p + 18 : end;
    long long v = 0;
    if (p >= end || *p == '0') return BAIL; /* zero (out of range) or a leading zero */
    while (p < lim && (unsigned)(*p - '0') < 10) v = v * 10 + (*p++ - '0');
    if (p == c->p) return BAIL; /* negative (out of range) or not a number */
    if (p < end && ((unsigned)(*p - '0') < 10 || *p == '.' || *p == 'e' || *p == 'E')) return BAIL;
    c->p = p;
    *out = v;
    return OK;
}

/* ``amount``: a non-negative JSON number, parsed correctly rounded (as msgspec and orjson). */
static result amount_value(cursor *c, double *out) {
    const unsigned char *s = c->p;
    if (!is_digit(c)) return BAIL; /* a sign: a negative amount (or -0) is the reference's to judge */
    if (*c->p == '0') {
        c->p++;
        if (is_digit(c)) return BAIL; /* a leading zero is not JSON */
    } else {
        while (is_digit(c)) c->p++;
    }
    if (at(c, '.')) {
        c->p++;
        if (!is_digit(c)) return BAIL;
        while (is_digit(c)) c->p++;
    }
    if (at(c, 'e') || at(c, 'E')) {
        c->p++;
        if (at(c, '+') || at(c, '-')) c->p++;
        if (!is_digit(c)) return BAIL;
        while (is_digit(c)) c->p++;
    }
    char buf[64];
    Py_ssize_t n = c->p - s;
    if (n >= (Py_ssize_t)sizeof buf) return BAIL;
    memcpy(buf, s, (size_t)n);
    buf[n] = '\0';
    double v = PyOS_string_to_double(buf, NULL, NULL);
    if (v == -1.0 && PyErr_Occurred()) return ERROR;
    if (!(v >= 0.0 && v <= MAX_AMOUNT)) return BAIL;
    *out = v;
    return OK;
}

/* The end of a JSON value that starts at c->p (an object, for props): brackets balanced outside
   strings. Whether the span is JSON is the props decoder's to check. */
static result skip_object(cursor *c) {
    if (!at(c, '{')) return BAIL;
    Py_ssize_t depth = 0;
    while (c->p < c->end) {
        unsigned char ch = *c->p++;
        if (ch == '"') {
            while (c->p < c->end && *c->p != '"') c->p += (*c->p == '\\') ? 2 : 1;
            if (c->p >= c->end) return BAIL;
            c->p++;
        } else if (ch == '{' || ch == '[') {
            depth++;
        } else if (ch == '}' || ch == ']') {
            if (--depth == 0) return OK;
        }
    }
    return BAIL;
}

/* Whether a value msgspec decoded equals what orjson gives for the same JSON: orjson reads an
   integer outside [-2^63, 2^64) as a float (schemas/events.py's _same_as_orjson). 0 also when
   nested deeper than MAX_DEPTH. */
#define MAX_DEPTH 256
static int as_orjson(PyObject *o, int depth) {
    if (PyLong_CheckExact(o)) {
        int overflow;
        PyLong_AsLongLongAndOverflow(o, &overflow);
        if (PyErr_Occurred()) return -1;
        if (overflow == 0) return 1;
        if (overflow < 0) return 0;
        PyLong_AsUnsignedLongLong(o);
        if (!PyErr_Occurred()) return 1;
        if (!PyErr_ExceptionMatches(PyExc_OverflowError)) return -1;
        PyErr_Clear();
        return 0;
    }
    if (depth >= MAX_DEPTH && (PyDict_CheckExact(o) || PyList_CheckExact(o))) return 0;
    if (PyDict_CheckExact(o)) {
        Py_ssize_t pos = 0;
        PyObject *k, *v;
        while (PyDict_Next(o, &pos, &k, &v)) {
            int same = as_orjson(v, depth + 1);
            if (same != 1) return same;
        }
    } else if (PyList_CheckExact(o)) {
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(o); i++) {
            int same = as_orjson(PyList_GET_ITEM(o, i), depth + 1);
            if (same != 1) return same;
        }
    }
    return 1;
}

/* The field whose name, a closing quote and nothing else, starts at c->p (after the key's opening
   quote); -1 for any other key (one with an escape too). */
#define KEY(name, f) \
    if (c->end - c->p > (Py_ssize_t)sizeof(name) - 1 && memcmp(c->p, name "\"", sizeof(name)) == 0) { \
        c->p += sizeof(name);                                                                   \
        return f;                                                                               \
    }
static inline int key(cursor *c) {
    switch (c->p < c->end ? *c->p : 0) {
    case 'e': KEY("event_id", F_ID); break;
    case 'u': KEY("user_id", F_USER); break;
    case 't': KEY("type", F_TYPE); KEY("ts", F_TS); break;
    case 'a': KEY("app_id", F_APP); KEY("amount", F_AMOUNT); break;
    case 'd': KEY("device_id", F_DEVICE); break;
    case 'p': KEY("props", F_PROPS); break;
    default: break;
    }
    return -1;
}
#undef KEY

/* One event object at c->p into *out (a new Event). */
static result event(cursor *c, long long ts_max, PyObject **out) {
    PyObject *v[N_FIELDS] = {NULL};
    unsigned seen = 0;
    double amount = 0.0;
    long long ts = 0;
    result r = BAIL;
    if (!at(c, '{')) return BAIL;
    c->p++;
    ws(c);
    if (at(c, '}')) return BAIL; /* required fields missing */
    for (;;) {
        if (!at(c, '"')) goto done;
        c->p++;
        int f = key(c);
        if (f < 0 || (seen & (1u << f))) goto done; /* another key, or one twice */
        seen |= 1u << f;
        ws(c);
        if (!at(c, ':')) goto done;
        c->p++;
        ws(c);
        if (f == F_TS) {
            if (ts_value(c, &ts) != OK || ts < MIN_TS_MS || ts > ts_max) goto done;
        } else if (f == F_AMOUNT) {
            if ((r = amount_value(c, &amount)) != OK) goto done;
            r = BAIL;
        } else if (f == F_PROPS) {
            const unsigned char *s = c->p;
            if (skip_object(c) != OK) goto done;
            PyObject *raw = PyBytes_FromStringAndSize((const char *)s, c->p - s);
            if (raw == NULL) { r = ERROR; goto done; }
            v[F_PROPS] = PyObject_CallOneArg(props_fn, raw);
            Py_DECREF(raw);
            if (v[F_PROPS] == NULL) {
                if (!PyErr_ExceptionMatches(PyExc_Exception)) { r = ERROR; goto done; }
                PyErr_Clear(); /* not JSON msgspec takes (or nested deeper than it reads) */
                goto done;
            }
            int same = PyDict_CheckExact(v[F_PROPS]) ? as_orjson(v[F_PROPS], 0) : 0;
            if (same < 0) { r = ERROR; goto done; }
            if (!same) goto done;
        } else {
            v[f] = string_value(c, f);
            if (v[f] == NULL) {
                if (PyErr_Occurred()) r = ERROR;
                goto done;
            }
        }
        ws(c);
        if (at(c, ',')) {
            c->p++;
            ws(c);
            continue;
        }
        if (!at(c, '}')) goto done;
        c->p++;
        break;
    }
    if ((seen & REQUIRED) != REQUIRED) goto done;
    if (amount == 0.0 && same_ascii(v[F_TYPE], (const unsigned char *)"payment", 7)) goto done;
    v[F_TS] = PyLong_FromLongLong(ts);
    v[F_AMOUNT] = (seen & (1u << F_AMOUNT)) ? PyFloat_FromDouble(amount) : Py_NewRef(zero_amount);
    if (v[F_TS] == NULL || v[F_AMOUNT] == NULL) { r = ERROR; goto done; }
    if (v[F_APP] == NULL) v[F_APP] = Py_NewRef(default_app);
    if (v[F_DEVICE] == NULL) v[F_DEVICE] = Py_NewRef(Py_None);
    if (v[F_PROPS] == NULL) v[F_PROPS] = Py_NewRef(Py_None);
    /* the struct is its fields' slots (checked by configure()): filled as msgspec fills them */
    PyObject *e = EventType->tp_alloc(EventType, 0);
    if (e == NULL) { r = ERROR; goto done; }
    for (int f = 0; f < N_FIELDS; f++) {
        *(PyObject **)((char *)e + offsets[f]) = v[f];
        v[f] = NULL;
    }
    *out = e;
    r = OK;
done:
    for (int f = 0; f < N_FIELDS; f++) Py_XDECREF(v[f]);
    return r;
}

/* decode(value: bytes, now_ms: int) -> list[Event] | None */
static PyObject *decode(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    if (!configured) return PyErr_Format(PyExc_RuntimeError, "schemas._decode: configure() first");
    if (nargs != 2 || !PyBytes_Check(args[0])) return PyErr_Format(PyExc_TypeError, "decode(value: bytes, now_ms)");
    long long now_ms = PyLong_AsLongLong(args[1]);
    if (now_ms == -1 && PyErr_Occurred()) return NULL;
    Py_ssize_t size = PyBytes_GET_SIZE(args[0]);
    cursor c = {(const unsigned char *)PyBytes_AS_STRING(args[0]), NULL};
    c.end = c.p + size;
    long long ts_max = now_ms + MAX_FUTURE_MS;
    PyObject *events = PyList_New(0), *ev = NULL;
    if (events == NULL) return NULL;
    result r = BAIL;
    ws(&c);
    if (at(&c, '[')) {
        c.p++;
        ws(&c);
        for (;;) {
            const unsigned char *start = c.p;
            if ((r = event(&c, ts_max, &ev)) != OK) break;
            r = BAIL;
            int failed = PyList_Append(events, ev);
            Py_CLEAR(ev);
            if (failed) { r = ERROR; break; }
            if (size > MAX_EVENT_BYTES && c.p - start > MAX_EVENT_BYTES) break;
            if (PyList_GET_SIZE(events) > MAX_BATCH_EVENTS) break;
            ws(&c);
            if (at(&c, ',')) {
                c.p++;
                ws(&c);
                continue;
            }
            if (at(&c, ']')) {
                c.p++;
                r = OK;
            }
            break;
        }
    } else if (size <= MAX_EVENT_BYTES) {
        r = event(&c, ts_max, &ev);
        if (r == OK && PyList_Append(events, ev) < 0) r = ERROR;
        Py_CLEAR(ev);
    }
    if (r == OK) {
        ws(&c);
        if (c.p == c.end) return events;
        r = BAIL; /* more after the document */
    }
    Py_DECREF(events);
    if (r == ERROR) return NULL;
    Py_RETURN_NONE;
}

/* The Event struct's field offsets, and a check that it is nothing but them (a new struct's
   fields are all its state: tp_alloc zeroes, the fields are set, msgspec's dealloc releases them). */
static int struct_layout(PyTypeObject *type) {
    if (type->tp_basicsize != (Py_ssize_t)(sizeof(PyObject) + N_FIELDS * sizeof(PyObject *)) ||
        type->tp_itemsize != 0 || PyType_IS_GC(type)) {
        PyErr_Format(PyExc_TypeError, "configure: %s is not a struct of %d fields without gc", type->tp_name, N_FIELDS);
        return -1;
    }
    unsigned used = 0;
    for (int f = 0; f < N_FIELDS; f++) {
        PyObject *d = PyDict_GetItemString(type->tp_dict, FIELD_NAMES[f]);
        if (d == NULL || !PyObject_TypeCheck(d, &PyMemberDescr_Type)) {
            PyErr_Format(PyExc_TypeError, "configure: %s.%s is not a struct field", type->tp_name, FIELD_NAMES[f]);
            return -1;
        }
        PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
        Py_ssize_t slot = (m->offset - (Py_ssize_t)sizeof(PyObject)) / (Py_ssize_t)sizeof(PyObject *);
        if ((m->type != T_OBJECT_EX && m->type != T_OBJECT) || slot < 0 || slot >= N_FIELDS || (used & (1u << slot))) {
            PyErr_Format(PyExc_TypeError, "configure: %s.%s is not an object slot", type->tp_name, FIELD_NAMES[f]);
            return -1;
        }
        used |= 1u << slot;
        offsets[f] = m->offset;
    }
    return 0;
}

static int const_i64(PyObject *consts, const char *name, long long *out) {
    PyObject *v = PyDict_GetItemString(consts, name);
    if (v == NULL) {
        PyErr_Format(PyExc_KeyError, "schemas._decode.configure: missing %s", name);
        return -1;
    }
    *out = PyLong_AsLongLong(v);
    return (*out == -1 && PyErr_Occurred()) ? -1 : 0;
}

static PyObject *const_obj(PyObject *consts, const char *name) {
    PyObject *v = PyDict_GetItemString(consts, name);
    if (v == NULL) PyErr_Format(PyExc_KeyError, "schemas._decode.configure: missing %s", name);
    return Py_XNewRef(v);
}

/* configure({"Event": type, "props": callable, "limits": {field: chars}, "default_app": str, ...}) */
static PyObject *configure(PyObject *mod, PyObject *consts) {
    if (!PyDict_Check(consts)) return PyErr_Format(PyExc_TypeError, "configure: a dict expected");
    PyObject *et = const_obj(consts, "Event"), *pf = const_obj(consts, "props"),
             *app = const_obj(consts, "default_app"), *lim = const_obj(consts, "limits");
    PyObject *amount = PyDict_GetItemString(consts, "MAX_PAYMENT_AMOUNT");
    int bad = et == NULL || pf == NULL || app == NULL || lim == NULL || amount == NULL ||
              !PyType_Check(et) || !PyCallable_Check(pf) || !PyUnicode_Check(app) || !PyDict_Check(lim);
    for (int f = 0; !bad && f < N_FIELDS; f++) {
        if (f == F_TS || f == F_AMOUNT || f == F_PROPS) continue;
        long long n;
        if (const_i64(lim, FIELD_NAMES[f], &n) < 0) bad = 1;
        else limits[f] = (Py_ssize_t)n;
    }
    if (!bad && (const_i64(consts, "MIN_TS_MS", &MIN_TS_MS) < 0 || const_i64(consts, "MAX_FUTURE_MS", &MAX_FUTURE_MS) < 0 ||
                 const_i64(consts, "MAX_EVENT_BYTES", &MAX_EVENT_BYTES) < 0 ||
                 const_i64(consts, "MAX_BATCH_EVENTS", &MAX_BATCH_EVENTS) < 0))
        bad = 1;
    if (!bad) {
        MAX_AMOUNT = PyFloat_AsDouble(amount);
        bad = MAX_AMOUNT == -1.0 && PyErr_Occurred();
    }
    if (bad) {
        Py_XDECREF(et); Py_XDECREF(pf); Py_XDECREF(app); Py_XDECREF(lim);
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "configure: bad constants");
        return NULL;
    }
    Py_DECREF(lim);
    if (struct_layout((PyTypeObject *)et) < 0) {
        Py_DECREF(et); Py_DECREF(pf); Py_DECREF(app);
        return NULL;
    }
    Py_XSETREF(EventType, (PyTypeObject *)et);
    Py_XSETREF(props_fn, pf);
    Py_XSETREF(default_app, app);
    if (zero_amount == NULL && (zero_amount = PyFloat_FromDouble(0.0)) == NULL) return NULL;
    configured = 1;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"configure", (PyCFunction)configure, METH_O, "configure(constants)"},
    {"decode", (PyCFunction)(void (*)(void))decode, METH_FASTCALL,
     "decode(value, now_ms) -> list[Event] | None: the events, or None when the reference must decide"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "schemas._decode", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__decode(void) {
    init_tables();
    return PyModule_Create(&module);
}
