/* The intake's inner loop: a batch's readings, straight from its protobuf bytes, applied to
 * the devices' state (see wuye.iot.domain.take_readings, which calls it and owns the rules'
 * wording).
 *
 * Why C: a batch of 100 readings through protobuf's Python objects and a Python loop cost
 * more than the rest of the intake together; here a normal reading is a dictionary lookup,
 * two comparisons and three attribute writes. Whatever is not a normal reading (a refusal,
 * a condition starting or ending) goes back to Python, so the rules stay written there.
 *
 * The bytes are walked as protobuf's wire format says: fields in any order, the last of a
 * repeated scalar wins, unknown fields skipped. Every read is bounds-checked: the bytes come
 * from the network.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

enum { WIRE_VARINT = 0, WIRE_FIXED64 = 1, WIRE_LEN = 2, WIRE_SGROUP = 3, WIRE_EGROUP = 4,
       WIRE_FIXED32 = 5 };
enum { BATCH_READINGS = 4, READING_DEVICE_ID = 1, READING_VALUE = 2, READING_OBSERVED = 3 };
/* Why a reading was refused; wuye.iot.domain maps these to Rejection. */
enum { UNKNOWN_DEVICE = 1, OBSERVED_IN_FUTURE = 2, VALUE_NOT_FINITE = 3, VALUE_OUT_OF_RANGE = 4 };
#define MAX_GROUP_DEPTH 64

typedef struct {
    const uint8_t *at;
    const uint8_t *end;
} Cursor;

static int read_varint(Cursor *c, uint64_t *out) {
    uint64_t value = 0;
    for (int shift = 0; shift < 64 && c->at < c->end; shift += 7) {
        uint8_t byte = *c->at++;
        value |= (uint64_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80)) {
            *out = value;
            return 0;
        }
    }
    return -1;
}

static int read_fixed64(Cursor *c, uint64_t *out) {
    if (c->end - c->at < 8)
        return -1;
    uint64_t value = 0;
    for (int i = 7; i >= 0; i--) /* little-endian on the wire, whatever the machine */
        value = (value << 8) | c->at[i];
    c->at += 8;
    *out = value;
    return 0;
}

static int read_length(Cursor *c, Cursor *inner) {
    uint64_t length;
    if (read_varint(c, &length) < 0 || length > (uint64_t)(c->end - c->at))
        return -1;
    inner->at = c->at;
    inner->end = c->at + length;
    c->at += length;
    return 0;
}

static int skip_field(Cursor *c, uint64_t tag, int depth) {
    uint64_t ignored;
    Cursor inner;
    switch (tag & 7) {
    case WIRE_VARINT:
        return read_varint(c, &ignored);
    case WIRE_FIXED64:
        return read_fixed64(c, &ignored);
    case WIRE_LEN:
        return read_length(c, &inner);
    case WIRE_FIXED32:
        if (c->end - c->at < 4)
            return -1;
        c->at += 4;
        return 0;
    case WIRE_SGROUP: /* a deprecated group among unknown fields: skip to its end */
        if (depth >= MAX_GROUP_DEPTH)
            return -1;
        while (c->at < c->end) {
            uint64_t inner_tag;
            if (read_varint(c, &inner_tag) < 0)
                return -1;
            if ((inner_tag & 7) == WIRE_EGROUP)
                return (inner_tag >> 3) == (tag >> 3) ? 0 : -1;
            if (skip_field(c, inner_tag, depth + 1) < 0)
                return -1;
        }
        return -1;
    default:
        return -1;
    }
}

typedef struct {
    const uint8_t *device_id;
    Py_ssize_t device_id_length;
    double value;
    uint64_t observed_ns;
} Reading;

static int read_reading(Cursor c, Reading *r) {
    static const uint8_t empty[1] = {0};
    r->device_id = empty;
    r->device_id_length = 0;
    r->value = 0.0;
    r->observed_ns = 0;
    while (c.at < c.end) {
        uint64_t tag, bits;
        if (read_varint(&c, &tag) < 0)
            return -1;
        uint64_t field = tag >> 3;
        int wire = tag & 7;
        if (field == READING_DEVICE_ID && wire == WIRE_LEN) {
            Cursor text;
            if (read_length(&c, &text) < 0)
                return -1;
            r->device_id = text.at;
            r->device_id_length = text.end - text.at;
        } else if (field == READING_VALUE && wire == WIRE_FIXED64) {
            if (read_fixed64(&c, &bits) < 0)
                return -1;
            memcpy(&r->value, &bits, sizeof r->value);
        } else if (field == READING_OBSERVED && wire == WIRE_FIXED64) {
            if (read_fixed64(&c, &r->observed_ns) < 0)
                return -1;
        } else if (field == 0 || skip_field(&c, tag, 0) < 0) {
            return -1;
        }
    }
    return 0;
}

/* The fields of DeviceState this loop reads and writes, found by their slots' offsets (bind):
 * a slot read is a load, where getattr costs a lookup through the type. */
enum Field {
    GATEWAY_ID, LOW, HIGH, VALID_LOW, VALID_HIGH, SILENT, LAST_SEEN, LAST_VALUE,
    LAST_OBSERVED_NS, ABNORMAL, FIELDS
};
static const char *const FIELD_NAMES[FIELDS] = {
    "gateway_id", "low", "high", "valid_low", "valid_high", "silent", "last_seen",
    "last_value", "last_observed_ns", "abnormal",
};
static Py_ssize_t offsets[FIELDS];
static PyObject *device_type; /* DeviceState, once bound */

/* A field's value, borrowed: use it before calling back into Python. */
static PyObject *field(PyObject *device, enum Field f) {
    PyObject *value = *(PyObject **)((char *)device + offsets[f]);
    if (value == NULL)
        PyErr_Format(PyExc_AttributeError, "a device's %s is not set", FIELD_NAMES[f]);
    return value;
}

static void set_field(PyObject *device, enum Field f, PyObject *value) {
    PyObject **slot = (PyObject **)((char *)device + offsets[f]);
    Py_XSETREF(*slot, Py_NewRef(value));
}

static int get_double(PyObject *device, enum Field f, double *out) {
    PyObject *value = field(device, f);
    if (value == NULL)
        return -1;
    *out = PyFloat_AsDouble(value);
    return (*out == -1.0 && PyErr_Occurred()) ? -1 : 0;
}

static int get_truth(PyObject *device, enum Field f) {
    PyObject *value = field(device, f);
    return value == NULL ? -1 : PyObject_IsTrue(value);
}

PyDoc_STRVAR(bind_doc,
"bind(device_type)\n"
"--\n\n"
"Tells the loop the class of the devices (a class with __slots__ holding the fields it uses).");

static PyObject *bind(PyObject *module, PyObject *type) {
    if (!PyType_Check(type))
        return PyErr_Format(PyExc_TypeError, "bind takes a class");
    Py_ssize_t found[FIELDS];
    for (int f = 0; f < FIELDS; f++) {
        PyObject *descriptor = PyObject_GetAttrString(type, FIELD_NAMES[f]);
        if (descriptor == NULL)
            return NULL;
        int slot = Py_IS_TYPE(descriptor, &PyMemberDescr_Type) &&
                   ((PyMemberDescrObject *)descriptor)->d_member->type == T_OBJECT_EX;
        if (slot)
            found[f] = ((PyMemberDescrObject *)descriptor)->d_member->offset;
        Py_DECREF(descriptor);
        if (!slot)
            return PyErr_Format(PyExc_TypeError, "%s is not a slot", FIELD_NAMES[f]);
    }
    memcpy(offsets, found, sizeof offsets);
    Py_XSETREF(device_type, Py_NewRef(type));
    Py_RETURN_NONE;
}

static int refuse(PyObject *refused, Py_ssize_t index, PyObject *device_id, int reason,
                  double value) {
    PyObject *item = Py_BuildValue("(nOid)", index, device_id, reason, value);
    if (item == NULL)
        return -1;
    int failed = PyList_Append(refused, item);
    Py_DECREF(item);
    return failed;
}

/* One reading: 1 taken, 0 refused or nothing more to do, -1 a Python error. */
static int take_one(PyObject *devices, PyObject *gateway_id, const Reading *r, Py_ssize_t index,
                    PyObject *received_at, uint64_t latest_ns, PyObject *refused,
                    PyObject *silence_ended, PyObject *condition_changed) {
    PyObject *device_id = PyUnicode_DecodeUTF8((const char *)r->device_id, r->device_id_length,
                                               NULL);
    if (device_id == NULL)
        return -1;
    int result = -1;
    PyObject *device = PyDict_GetItemWithError(devices, device_id); /* borrowed */
    if (device == NULL) {
        if (!PyErr_Occurred())
            result = refuse(refused, index, device_id, UNKNOWN_DEVICE, r->value);
        goto done;
    }
    if ((PyObject *)Py_TYPE(device) != device_type) {
        PyErr_SetString(PyExc_TypeError, "devices must be of the class given to bind()");
        goto done;
    }
    Py_INCREF(device); /* the callbacks below may change the dictionary */
    PyObject *owner = field(device, GATEWAY_ID);
    if (owner == NULL)
        goto done_device;
    int owned = owner == gateway_id || PyUnicode_Compare(owner, gateway_id) == 0;
    if (!owned && PyErr_Occurred())
        goto done_device;
    if (!owned) {
        result = refuse(refused, index, device_id, UNKNOWN_DEVICE, r->value);
        goto done_device;
    }
    if (r->observed_ns > latest_ns) {
        result = refuse(refused, index, device_id, OBSERVED_IN_FUTURE, r->value);
        goto done_device;
    }
    double low, high;
    if (get_double(device, LOW, &low) < 0 || get_double(device, HIGH, &high) < 0)
        goto done_device;
    int normal = low <= r->value && r->value <= high; /* false for NaN */
    if (!normal) {
        /* Outside the normal range: an alarm, or a value the kind cannot read at all. */
        double valid_low, valid_high;
        if (get_double(device, VALID_LOW, &valid_low) < 0 ||
            get_double(device, VALID_HIGH, &valid_high) < 0)
            goto done_device;
        int reason = !isfinite(r->value) ? VALUE_NOT_FINITE
                     : (r->value < valid_low || r->value > valid_high) ? VALUE_OUT_OF_RANGE
                                                                       : 0;
        if (reason) {
            result = refuse(refused, index, device_id, reason, r->value);
            goto done_device;
        }
    }
    set_field(device, LAST_SEEN, received_at);
    PyObject *observed = PyLong_FromUnsignedLongLong(r->observed_ns);
    if (observed == NULL)
        goto done_device;
    int silent = get_truth(device, SILENT);
    if (silent < 0)
        goto done_observed;
    if (silent) {
        PyObject *none = PyObject_CallFunctionObjArgs(silence_ended, device, observed, NULL);
        if (none == NULL)
            goto done_observed;
        Py_DECREF(none);
    }
    PyObject *last = field(device, LAST_OBSERVED_NS);
    int older = last == NULL ? -1 : PyObject_RichCompareBool(observed, last, Py_LT);
    if (older != 0) { /* an older reading is taken but the latest state stands */
        result = older < 0 ? -1 : 1;
        goto done_observed;
    }
    PyObject *value = PyFloat_FromDouble(r->value);
    if (value == NULL)
        goto done_observed;
    set_field(device, LAST_VALUE, value);
    Py_DECREF(value);
    set_field(device, LAST_OBSERVED_NS, observed);
    int abnormal = get_truth(device, ABNORMAL);
    result = abnormal < 0 ? -1 : 1;
    if (abnormal >= 0 && normal == abnormal) { /* the condition starts or ends */
        PyObject *none = PyObject_CallFunction(condition_changed, "OOdO", device,
                                               normal ? Py_False : Py_True, r->value, observed);
        if (none == NULL)
            result = -1;
        Py_XDECREF(none);
    }
done_observed:
    Py_DECREF(observed);
done_device:
    Py_DECREF(device);
done:
    Py_DECREF(device_id);
    return result;
}

PyDoc_STRVAR(take_doc,
"take(devices, gateway_id, batch, received_at, latest_ns, silence_ended, condition_changed)\n"
"--\n\n"
"Applies the readings of `batch` (a ReadingBatch's bytes) to `devices` (device_id to\n"
"DeviceState), and returns (taken, refused), refused as (index, device_id, reason).\n"
"A taken reading's device is seen at `received_at`; silence_ended(device, observed_ns) and\n"
"condition_changed(device, raised, value, observed_ns) are called when those happen.\n"
"Raises ValueError if the bytes are not a batch.");

/* Calls `each` on every reading of the batch in `c`, in order; -1 if the bytes are not a batch
 * (nothing called then but what came before), -2 if `each` failed. */
typedef int (*ReadingVisitor)(const Reading *reading, Py_ssize_t index, void *state);

static int visit_readings(Cursor c, ReadingVisitor each, void *state) {
    Py_ssize_t index = 0;
    while (c.at < c.end) {
        uint64_t tag;
        Cursor message;
        Reading reading;
        if (read_varint(&c, &tag) < 0 || (tag >> 3) == 0)
            return -1;
        if ((tag >> 3) != BATCH_READINGS || (tag & 7) != WIRE_LEN) {
            if (skip_field(&c, tag, 0) < 0)
                return -1;
            continue;
        }
        if (read_length(&c, &message) < 0 || read_reading(message, &reading) < 0)
            return -1;
        if (each != NULL && each(&reading, index, state) < 0)
            return -2;
        index++;
    }
    return 0;
}

typedef struct {
    PyObject *devices, *gateway_id, *received_at, *refused, *silence_ended, *condition_changed;
    uint64_t latest_ns;
    Py_ssize_t taken;
} Batch;

static int take_visited(const Reading *reading, Py_ssize_t index, void *state) {
    Batch *b = state;
    int outcome = take_one(b->devices, b->gateway_id, reading, index, b->received_at,
                           b->latest_ns, b->refused, b->silence_ended, b->condition_changed);
    b->taken += outcome > 0;
    return outcome < 0 ? -1 : 0;
}

static PyObject *take(PyObject *module, PyObject *args) {
    Batch b = {0};
    Py_buffer bytes;
    unsigned long long latest_ns;
    if (!PyArg_ParseTuple(args, "O!Uy*OKOO:take", &PyDict_Type, &b.devices, &b.gateway_id,
                          &bytes, &b.received_at, &latest_ns, &b.silence_ended,
                          &b.condition_changed))
        return NULL;
    if (device_type == NULL) {
        PyBuffer_Release(&bytes);
        return PyErr_Format(PyExc_RuntimeError, "bind() the class of the devices first");
    }
    b.latest_ns = latest_ns;
    Cursor whole = {bytes.buf, (const uint8_t *)bytes.buf + bytes.len};
    PyObject *result = NULL;
    /* The shape first, so that a malformed batch changes no device. */
    if (visit_readings(whole, NULL, NULL) < 0) {
        PyErr_SetString(PyExc_ValueError, "not a ReadingBatch in protobuf's wire format");
    } else if ((b.refused = PyList_New(0)) != NULL) {
        if (visit_readings(whole, take_visited, &b) == 0)
            result = Py_BuildValue("(nO)", b.taken, b.refused);
        Py_DECREF(b.refused);
    }
    PyBuffer_Release(&bytes);
    return result;
}

static PyMethodDef methods[] = {
    {"bind", bind, METH_O, bind_doc},
    {"take", take, METH_VARARGS, take_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_readings", "The intake's inner loop (see take).", -1, methods,
};

PyMODINIT_FUNC PyInit__readings(void) {
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddIntConstant(m, "UNKNOWN_DEVICE", UNKNOWN_DEVICE) < 0 ||
        PyModule_AddIntConstant(m, "OBSERVED_IN_FUTURE", OBSERVED_IN_FUTURE) < 0 ||
        PyModule_AddIntConstant(m, "VALUE_NOT_FINITE", VALUE_NOT_FINITE) < 0 ||
        PyModule_AddIntConstant(m, "VALUE_OUT_OF_RANGE", VALUE_OUT_OF_RANGE) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
