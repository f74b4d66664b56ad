#include "engine.h"

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

PyObject *murmur2(PyObject *mod, PyObject *arg) {
    if (!PyBytes_Check(arg)) return PyErr_Format(PyExc_TypeError, "murmur2: bytes expected");
    return PyLong_FromUnsignedLong(murmur2_32((const unsigned char *)PyBytes_AS_STRING(arg), PyBytes_GET_SIZE(arg)));
}

static inline long home_of(const char *utf8, Py_ssize_t size, long partitions) { /* Kafka's default partitioner */
    return (long)((murmur2_32((const unsigned char *)utf8, size) & 0x7fffffff) % (uint32_t)partitions);
}

PyObject *home_partition(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
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

PyObject *elsewhere(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    /* elsewhere(events, partition, partitions): PartitionCache.elsewhere's loop */
    if (nargs != 3 || !PyList_Check(args[0]))
        return PyErr_Format(PyExc_TypeError, "elsewhere(events: list, partition, partitions)");
    if (EventType == NULL) return PyErr_Format(PyExc_RuntimeError, "streams.engine._engine: configure() first");
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
