#include "engine.h"

/* ---- a day close's segment windows in one pass over a user's days (segments.py) ------------
   Python twin: streams.engine.segments.window_sums. Returns (recent, before, older, value_micros,
   paid_micros, login_days, next_day) or None when an amount does not fit 64 bits (hostile amounts: the
   twin, with Python's integers, takes over). */

PyObject *segment_sums(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    (void)mod;
    if (nargs != 3 || !PyDict_Check(args[0]) || !PyTuple_Check(args[2]))
        return PyErr_Format(PyExc_TypeError, "segment_sums(days, bounds, offsets)");
    PyObject *days = args[0], *bounds = args[1], *offsets = args[2];
    long long b[7];
    if (!PyTuple_Check(bounds) || PyTuple_GET_SIZE(bounds) != 7)
        return PyErr_Format(PyExc_TypeError, "segment_sums: bounds = (day, r0, b0, o0, v0, k0, p0)");
    for (int i = 0; i < 7; i++)
        if (i64(PyTuple_GET_ITEM(bounds, i), &b[i]) < 0) return NULL;
    long long day = b[0], r0 = b[1], b0 = b[2], o0 = b[3], v0 = b[4], k0 = b[5], p0 = b[6];
    Py_ssize_t n_off = PyTuple_GET_SIZE(offsets);
    long long off[16];
    if (n_off > 16) return PyErr_Format(PyExc_ValueError, "segment_sums: at most 16 offsets");
    for (Py_ssize_t i = 0; i < n_off; i++)
        if (i64(PyTuple_GET_ITEM(offsets, i), &off[i]) < 0) return NULL;
    long long recent = 0, before = 0, older = 0, logins = 0, value_m = 0, paid = 0, best = NONE;
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    while (PyDict_Next(days, &pos, &k, &v)) {
        long long d, events, login, micros;
        if (i64(k, &d) < 0) return NULL;
        if (!PyTuple_Check(v) || PyTuple_GET_SIZE(v) < 4)
            return PyErr_Format(PyExc_TypeError, "segment_sums: a day's counters must be a tuple");
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
    return Py_BuildValue("(LLLLLLL)", recent, before, older, value_m, paid, logins, best);
}
