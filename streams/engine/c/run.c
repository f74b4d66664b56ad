/* What a run of one user's events writes beyond the per-event work of apply.c: the day's counters
 * held in C, the user key, the absence-deadline and last-active indexes, the run's end. */
#include "engine.h"

int day_store(PyObject *state, DayCounts *c) { /* state.days[c.day] = (...) */
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

int day_load(PyObject *state, DayCounts *c, long long day, PyObject *day_obj) {
    PyObject *days = slot(state, S_days);
    if (days == NULL) return -1;
    PyObject *t = PyDict_GetItemWithError(days, day_obj);
    if (t == NULL) {
        if (PyErr_Occurred()) return -1;
        t = no_counts;
    }
    if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 7) {
        PyErr_SetString(PyExc_TypeError, "streams.engine._engine: a day's counters must be a 7-tuple");
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

PyObject *make_user_key(PyObject *app, PyObject *user) { /* state.user_key: app KEY_SEP user, UTF-8 */
    Py_ssize_t n_app, n_user;
    const char *c_app = PyUnicode_AsUTF8AndSize(app, &n_app);
    if (c_app == NULL) return NULL;
    const char *c_user = PyUnicode_AsUTF8AndSize(user, &n_user);
    if (c_user == NULL) return NULL;
    PyObject *key = PyBytes_FromStringAndSize(NULL, n_app + 1 + n_user);
    if (key == NULL) return NULL;
    char *p = PyBytes_AS_STRING(key);
    memcpy(p, c_app, (size_t)n_app);
    p[n_app] = KEY_SEP;
    memcpy(p + n_app + 1, c_user, (size_t)n_user);
    return key;
}

PyObject *call_method(PyObject *self, PyObject *name, const char *fmt, ...) {
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
int open_episode(PyObject *state, long long index, long long *out) {
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
    if (PyList_GET_SIZE(heap) > 2 * PyDict_GET_SIZE(deadlines) + HEAP_SLACK) {
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


/* PartitionIndexes._set_deadlines: the absence deadlines whose inputs ``moved`` */
int set_deadlines(Indexes *ixs, PyObject *key, PyObject *state, long long moved, long long short_ms,
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
int end_run(PyObject *self, PyObject *dirty, Indexes *ixs, PyObject *key, PyObject *state, long long moved,
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
