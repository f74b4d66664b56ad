#include "engine.h"

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
        PyErr_SetString(PyExc_TypeError, "streams.engine._engine: a UserState map must be a dict");
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
        PyErr_SetString(PyExc_TypeError, "streams.engine._engine: UserState.burst_days must be a tuple");
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

PyObject *drain(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    /* drain(dirty, data, position, cutoffs | None, encode, seal, inline_ids): StateStore.drain's loop */
    if (nargs != 7 || !PyDict_Check(args[0]))
        return PyErr_Format(PyExc_TypeError, "drain(dirty: dict, data, position, cutoffs, encode, seal, inline_ids)");
    if (StateType == NULL) return PyErr_Format(PyExc_RuntimeError, "streams.engine._engine: configure() first");
    PyObject *dirty = args[0], *data = args[1], *position = args[2], *cutoffs = args[3], *encode = args[4];
    PyObject *seal = args[5], *cutoff_hour = Py_None;
    long long inline_ids;
    if (i64(args[6], &inline_ids) < 0) return NULL;
    long long cut[4] = {0, 0, 0, 0};
    int prune = cutoffs != Py_None;
    if (prune) {
        if (!PyTuple_Check(cutoffs) || PyTuple_GET_SIZE(cutoffs) != 4)
            return PyErr_Format(PyExc_TypeError, "drain: cutoffs must be (day, hour, minute, burst day) or None");
        for (int i = 0; i < 4; i++)
            if (i64(PyTuple_GET_ITEM(cutoffs, i), &cut[i]) < 0) return NULL;
        cutoff_hour = PyTuple_GET_ITEM(cutoffs, 1); /* borrowed */
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
        PyObject *ids = slot(state, S_ids), *sealed = slot(state, S_sealed);
        NOTNULL(ids);
        NOTNULL(sealed);
        if (!PyDict_Check(ids) || !PyTuple_Check(sealed)) {
            PyErr_SetString(PyExc_TypeError, "drain: UserState.ids must be a dict and sealed a tuple");
            goto error;
        }
        if (PyTuple_GET_SIZE(sealed) > 0 || PyDict_GET_SIZE(ids) > inline_ids) { /* SealedIds.seal */
            PyObject *records = PyObject_CallFunctionObjArgs(seal, key, state, cutoff_hour, NULL);
            NOTNULL(records);
            int r = PyList_Check(records) ? PyList_SetSlice(out, PY_SSIZE_T_MAX, PY_SSIZE_T_MAX, records) : -1;
            if (!PyList_Check(records)) PyErr_SetString(PyExc_TypeError, "drain: seal must return a list");
            Py_DECREF(records);
            CHECK(r);
        }
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
