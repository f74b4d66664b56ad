#include "engine.h"

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

PyObject *activity_columns(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) return PyErr_Format(PyExc_TypeError, "activity_columns(dirty_rows, dirty, lookup)");
    if (StateType == NULL) return PyErr_Format(PyExc_RuntimeError, "streams.engine._engine: configure() first");
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
