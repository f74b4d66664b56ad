#include "engine.h"

/* ---- a day close's visit of one user's segments (segments.py) -------------------------------------
   Python twin: streams.engine.segments.visit. One pass over the user's days gives the window sums (the
   twin of segments.window_sums); then the decisions of segments.close_day_and_next are taken without
   building anything. Returns the next change day (an int) when no segment changes at this close, the
   sums (recent, before, older, value_micros, paid_micros, login_days, next_day) when one does (the
   Python path builds the changes from them), or None when an amount does not fit 64 bits (hostile
   amounts: the twin, with Python's integers, takes over). */

PyObject *segment_visit(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    (void)mod;
    if (nargs != 5 || !PyDict_Check(args[0]) || !PyTuple_Check(args[2]) || !PyTuple_Check(args[4]) ||
        PyTuple_GET_SIZE(args[2]) != 4 || PyTuple_GET_SIZE(args[4]) < 9)
        return PyErr_Format(PyExc_TypeError, "segment_visit(days, first_ts, seg, day, params)");
    PyObject *days = args[0], *seg = args[2], *params = args[4];
    long long first_ts, day, sg[4], p[8];
    if (i64(args[1], &first_ts) < 0 || i64(args[3], &day) < 0) return NULL;
    for (int i = 0; i < 4; i++)
        if (i64(PyTuple_GET_ITEM(seg, i), &sg[i]) < 0) return NULL;
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

    /* the decisions of close_day_and_next: does any dimension change at this close? */
    int changes = 0;
    long long first = floordiv(first_ts, DAY_MS);
    if (first <= day) {
        long long lifecycle = first >= r0 ? NEW
                              : recent && before ? RETURNING
                              : recent ? RESURRECTING
                              : older ? DORMANT : CHURNED;
        changes |= lifecycle != sg[0];
    }
    long long tier = value_m >= high ? V_HIGH : value_m > mid ? V_MID : value_m > 0 ? V_LOW : V_NONE;
    changes |= tier != sg[1] && (sg[1] != NONE || tier != V_NONE);
    if (sg[2] == HIGH_POTENTIAL) {
        long long lapse = sg[3] + convert;
        if (day >= lapse) changes = 1;  /* the lapse */
        else if (lapse > day && (best == NONE || lapse < best)) best = lapse;
    } else if ((sg[2] == NONE || day > sg[3]) && logins == streak && paid == 0) {
        changes = 1;  /* an entry */
    }
    if (!changes) return PyLong_FromLongLong(best);
    return Py_BuildValue("(LLLLLLL)", recent, before, older, value_m, paid, logins, best);
}
