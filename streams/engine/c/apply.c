/* UserPartition.apply's loop (streams/engine/partition.py, _apply_py): read it there first. */
#include "engine.h"
/* xxHash 0.8.3 (BSD 2-Clause, vendored): XXH3_64bits of an event id's UTF-8 bytes, the hash the
   Python loop takes with the xxhash package (state.event_hash); XXH3's output is stable since 0.8.0 */
#define XXH_INLINE_ALL
#include "vendor/xxhash.h"

#define CALL_M(...) do { PyObject *r_ = call_method(__VA_ARGS__); if (r_ == NULL) goto error; Py_DECREF(r_); } while (0)
#define CALL_F(...) do { PyObject *r_ = PyObject_CallFunction(__VA_ARGS__); if (r_ == NULL) goto error; Py_DECREF(r_); } while (0)

/* The outcome counts of one app by UTC day, a window of days held here: UserPartition._count is called
   per (app, day) when the app changes and at the end, not at every change of day (late-heavy batches
   change day every few events). The sums are the Python loop's. */
#define OUTCOME_DAYS 64
typedef struct {
    int held;
    long long base, lo, hi;
    long long n[OUTCOME_DAYS][4]; /* accepted, late, duplicates, replayed */
} DayOutcomes;

static int outcomes_flush(PyObject *self, PyObject *out, PyObject *app, DayOutcomes *o) {
    if (!o->held) return 0;
    o->held = 0;
    for (long long k = o->lo; k <= o->hi; k++) {
        long long *n = o->n[k];
        if (n[0] | n[1] | n[2] | n[3]) {
            PyObject *r = call_method(self, s_count, "(OOLLLLL)", out, app, o->base + k, n[0], n[1], n[2], n[3]);
            if (r == NULL) return -1;
            Py_DECREF(r);
            n[0] = n[1] = n[2] = n[3] = 0;
        }
    }
    return 0;
}

static int outcomes_add(PyObject *self, PyObject *out, PyObject *app, DayOutcomes *o, long long day,
                        long long accepted, long long late, long long duplicates, long long replayed) {
    if (!(accepted | late | duplicates | replayed)) return 0;
    long long k = o->held ? day - o->base : -1;
    if (k < 0 || k >= OUTCOME_DAYS) { /* outside the window: flushed, and a new one (mostly looking back) */
        if (outcomes_flush(self, out, app, o) < 0) return -1;
        o->held = 1;
        k = OUTCOME_DAYS - 4;
        o->base = day - k;
        o->lo = o->hi = k;
    }
    if (k < o->lo) o->lo = k;
    if (k > o->hi) o->hi = k;
    long long *n = o->n[k];
    n[0] += accepted, n[1] += late, n[2] += duplicates, n[3] += replayed;
    return 0;
}

PyObject *apply(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) return PyErr_Format(PyExc_TypeError, "apply(partition, messages, out)");
    if (EventType == NULL) return PyErr_Format(PyExc_RuntimeError, "streams.engine._engine: configure() first");
    PyObject *self = args[0], *messages = args[1], *out = args[2];
    if (!PyList_Check(messages)) return PyErr_Format(PyExc_TypeError, "apply: messages must be a list");

    PyObject *rules_for = NULL, *meta = NULL, *store = NULL, *reroute = NULL, *dirty_rows = NULL, *alerts = NULL,
             *device_obs = NULL, *deadlines = NULL, *ix_short = NULL, *ix_inter = NULL, *ix_long = NULL, *ix_recall = NULL,
             *partition = NULL, *store_get = NULL, *rules = NULL, *key = NULL, *state = NULL, *row_key = NULL,
             *tmp = NULL, *tmp2 = NULL, *result = NULL, *dirty = NULL;
    DayCounts c = {NONE, 0, 0, 0, 0, 0, 0, NULL};
    long long lateness, skew, position_max, st, wm, wm_day, retention = 0, horizon_ms = 0, burst = 0, short_ms = 0,
        long_ms = 0, inter_ms = 0, run_short = 0, run_long = 0, run_inter = 0, moved = 0, off_events = NONE, off_reroute = NONE, row_day = NONE,
        obs_day = NONE, accepted = 0, late_events = 0, duplicates = 0, replayed = 0, count_day = NONE;
    PyObject *rules_app = NULL, *app_id = NULL, *user_id = NULL; /* borrowed from the events */
    PyObject *obs_app = NULL, *obs_device = NULL, *obs_user = NULL;
    DayOutcomes counted;
    memset(&counted, 0, sizeof counted);

    NOTNULL(rules_for = PyObject_GetAttr(self, s_rules));
    CHECK(attr_i64(rules_for, s_lateness_ms, &lateness));
    CHECK(attr_i64(rules_for, s_skew_ms, &skew));
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
    NOTNULL(ix_recall = PyObject_GetItem(deadlines, k_recall));
    if (Py_TYPE(ix_short) != DeadlineType || Py_TYPE(ix_inter) != DeadlineType || Py_TYPE(ix_long) != DeadlineType
        || Py_TYPE(ix_recall) != DeadlineType) {
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
        if (!PyTuple_Check(msg) || PyTuple_GET_SIZE(msg) != 5 || !PyList_Check(PyTuple_GET_ITEM(msg, 3))) {
            PyErr_SetString(PyExc_TypeError, "apply: a message must be (topic, offset, key, [events], timestamp)");
            goto error;
        }
        PyObject *topic = PyTuple_GET_ITEM(msg, 0), *offset_obj = PyTuple_GET_ITEM(msg, 1);
        PyObject *events = PyTuple_GET_ITEM(msg, 3);  /* the message's key (item 2) is not read here */
        int src = str_eq(topic, reroute);
        CHECK(src);
        long long offset, record_ts;
        CHECK(i64(offset_obj, &offset));
        CHECK(i64(PyTuple_GET_ITEM(msg, 4), &record_ts));
        /* SPEC section 2: an event moves stream time at most to its record's timestamp + the clock skew */
        long long cap = record_ts >= 0 ? record_ts + skew : LLONG_MAX;
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
            long long t = ts <= cap ? ts : cap; /* what the event's time moves stream time to */
            if (t > st) {
                if (st == NONE) {
                    CHECK(set_attr_i64(meta, s_closed_day, floordiv(t - lateness, DAY_MS) - 1));
                    CALL_M(self, s_set_next_day_end, "()");
                }
                if (t == ts) {
                    CHECK(PyObject_SetAttr(meta, s_stream_time, ts_obj));
                } else {
                    CHECK(set_attr_i64(meta, s_stream_time, t));
                }
                st = t;
                CHECK(PyObject_SetAttr(self, s_meta_dirty, Py_True));
                wm = t - lateness;
                wm_day = floordiv(wm, DAY_MS);
                long long nde, ns, ni, nl, nr;
                CHECK(attr_i64(self, s_next_day_end, &nde));
                CHECK(slot_i64(ix_short, D_next_at, &ns));
                CHECK(slot_i64(ix_inter, D_next_at, &ni));
                CHECK(slot_i64(ix_long, D_next_at, &nl));
                CHECK(slot_i64(ix_recall, D_next_at, &nr));
                if (wm >= nde || wm >= ns || wm >= ni || wm >= nl || wm >= nr) {
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
                if (rules_app != NULL) { /* outcomes are counted per app and day */
                    CHECK(outcomes_add(self, out, rules_app, &counted, count_day, accepted, late_events, duplicates,
                                       replayed));
                    CHECK(outcomes_flush(self, out, rules_app, &counted));
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
            if (day != count_day) { /* outcomes are counted per app and day */
                CHECK(outcomes_add(self, out, rules_app, &counted, count_day, accepted, late_events, duplicates,
                                   replayed));
                accepted = late_events = duplicates = replayed = 0;
                count_day = day;
            }
            /* older than the days the state keeps: applied like any late event, its counters to the ledger */
            int cold = day < wm_day - retention;
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
            long long cutoff = floordiv(wm - horizon_ms, HOUR_MS);
            int seen = kept_obj != NULL && kept + ids_base >= cutoff;
            if (!seen) { /* a hot user's older ids, sealed in segments (streams/engine/dedup.py) */
                PyObject *sealed = slot(state, S_sealed);
                NOTNULL(sealed);
                if (!PyTuple_Check(sealed)) {
                    PyErr_SetString(PyExc_TypeError, "apply: UserState.sealed must be a tuple");
                    goto error;
                }
                if (PyTuple_GET_SIZE(sealed) > 0) {
                    NOTNULL(tmp = call_method(self, s_sealed_seen, "(OOOL)", key, state, h, cutoff));
                    seen = PyObject_IsTrue(tmp);
                    Py_CLEAR(tmp);
                    CHECK(seen);
                }
            }
            if (seen) {
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
            if (cold) CALL_M(self, s_cold_event, "(OO)", out, event); /* UserPartition._cold_event */
            else if (late) late_events += 1;
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
            PyObject *etype = slot(event, E_type);
            NOTNULL(etype);
            long long counter;
            int excluded;
            CHECK(classify(etype, &counter, &excluded));
            int is_login = counter == LOGINS;
            if (!cold) {
                if (day != c.day) {
                    CHECK(day_store(state, &c));
                    CHECK(day_load(state, &c, day, day_obj));
                }
                c.n += 1;
                if (counter == LOGINS) c.logins += 1;
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
            }
            if (counter == PAYMENTS) { /* segments: a high-potential user's payment may convert them */
                PyObject *seg = slot(state, S_seg);
                NOTNULL(seg);
                long long potential = NONE;
                if (PyTuple_Check(seg) && PyTuple_GET_SIZE(seg) > 2) CHECK(i64(PyTuple_GET_ITEM(seg, 2), &potential));
                if (potential == HIGH_POTENTIAL) /* UserPartition._convert (SegmentActions) */
                    CALL_M(self, s_convert, "(OOOL)", out, state, event, wm);
            }
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
                    CALL_F(f_resolve, "OOOOOOOL", self, alerts, state, ts_obj, Py_True, a, u, wm);
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
                        CALL_F(f_resolve, "OOOOOOOL", self, alerts, state, ts_obj, Py_False, a, u, wm);
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
                if (count >= burst) CALL_F(f_burst, "OOOOLOOOL", self, alerts, state, ts_obj, count, rules, a, u, wm);
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
            if (!cold && (day != row_day || key != row_key)) {
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
    if (rules_app != NULL) {
        CHECK(outcomes_add(self, out, rules_app, &counted, count_day, accepted, late_events, duplicates, replayed));
        CHECK(outcomes_flush(self, out, rules_app, &counted));
    }
    result = Py_NewRef(Py_None);
error:
    Py_XDECREF(c.amount);
    Py_XDECREF(rules_for); Py_XDECREF(meta); Py_XDECREF(store); Py_XDECREF(store_get); Py_XDECREF(reroute);
    Py_XDECREF(dirty_rows); Py_XDECREF(alerts); Py_XDECREF(device_obs); Py_XDECREF(deadlines);
    Py_XDECREF(ix_short); Py_XDECREF(ix_inter); Py_XDECREF(ix_long); Py_XDECREF(ix_recall); Py_XDECREF(partition); Py_XDECREF(rules);
    Py_XDECREF(key); Py_XDECREF(state); Py_XDECREF(row_key); Py_XDECREF(tmp); Py_XDECREF(tmp2); Py_XDECREF(dirty);
    return result;
}
