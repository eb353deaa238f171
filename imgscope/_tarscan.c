/*
 * The scanner's fast path for plain tar entries (imgscope/scan.py, ``_scan_tar``).
 *
 * Why C: per entry, the Python loop spends about 15 microseconds on header
 * parsing, name normalising and building the Entry; an image of 26,000
 * entries then costs more CPU than GNU tar needs to list it.  This loop does
 * the same work for the entries nearly every layer is made of, and stops at
 * the first entry it is not sure of, which the Python loop then takes, exactly
 * as before.  So there is one set of rules (scan.py's); this file only
 * recognises the case where those rules are simple, and must give the same
 * result there (tests/test_tarscan.py compares both on every test corpus).
 *
 * An entry is taken here only when all of this holds, otherwise the loop stops
 * before its header:
 *   - the header and the whole of the file's padded data lie in [pos, end);
 *   - all 512 header bytes are ASCII and the checksum field is octal digits
 *     starting with '0' and ended by NULs or spaces, equal to the unsigned sum;
 *   - mode, uid, gid (7 digits) and size, mtime (11 digits) are octal digits
 *     ended by a NUL or a space;
 *   - the type is a regular file ('0', NUL, '7'), a directory ('5') or a
 *     symlink ('2');
 *   - the name (ustar prefix included), its leading slashes dropped, is not
 *     empty, does not start with '.', and holds no "/." and no "//" (so no
 *     whiteout, no "..", nothing to normalise but trailing slashes);
 *   - the path is not yet in the layer's entries and is no eStargz name.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define BLOCK 512

/* Set once by configure(): what scan.py would use. */
static PyObject *entry_type;      /* imgscope.model.Entry */
static PyObject *setters;         /* tuple of Entry's 13 slot descriptors, in field order */
static PyObject *kind_file, *kind_dir, *kind_symlink;
static PyObject *empty_str, *empty_tuple, *zero;
static PyObject *estargz_names;   /* frozenset of paths */
static PyObject *hexdigest;       /* xxhash.xxh3_64_hexdigest */

static PyObject *
configure(PyObject *self, PyObject *args)
{
    PyObject *etype, *sets, *f, *d, *s, *names, *hexfn;
    if (!PyArg_ParseTuple(args, "OO!UUUO!O", &etype, &PyTuple_Type, &sets, &f, &d, &s, &PyFrozenSet_Type, &names,
                          &hexfn))
        return NULL;
    if (!PyType_Check(etype) || PyTuple_GET_SIZE(sets) != 13) {
        PyErr_SetString(PyExc_TypeError, "configure: Entry type and its 13 slot descriptors expected");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < 13; i++) {
        if (Py_TYPE(PyTuple_GET_ITEM(sets, i))->tp_descr_set == NULL) {
            PyErr_SetString(PyExc_TypeError, "configure: a field descriptor cannot be set");
            return NULL;
        }
    }
    Py_XSETREF(entry_type, Py_NewRef(etype));
    Py_XSETREF(setters, Py_NewRef(sets));
    Py_XSETREF(kind_file, Py_NewRef(f));
    Py_XSETREF(kind_dir, Py_NewRef(d));
    Py_XSETREF(kind_symlink, Py_NewRef(s));
    Py_XSETREF(estargz_names, Py_NewRef(names));
    Py_XSETREF(hexdigest, Py_NewRef(hexfn));
    Py_RETURN_NONE;
}

/* An octal field of `digits` digits then a NUL or a space; -1 when it is anything else. */
static long long
octal(const unsigned char *p, int digits)
{
    long long v = 0;
    for (int i = 0; i < digits; i++) {
        unsigned char c = p[i];
        if (c < '0' || c > '7')
            return -1;
        v = (v << 3) | (c - '0');
    }
    if (p[digits] != 0 && p[digits] != ' ')
        return -1;
    return v;
}

/* Whether the checksum is plain and right, for an ASCII header (see the top of the file). */
static int
plain_checksum(const unsigned char *h)
{
    unsigned int sum = 0, high = 0;
    for (int i = 0; i < BLOCK; i++) {
        sum += h[i];
        high |= h[i];
    }
    if (high & 0x80 || h[148] != '0')
        return 0;
    long long stored = 0;
    int i = 148;
    while (i < 156 && h[i] >= '0' && h[i] <= '7') {
        stored = (stored << 3) | (h[i] - '0');
        i++;
    }
    for (; i < 156; i++)
        if (h[i] != 0 && h[i] != ' ')
            return 0;
    for (i = 148; i < 156; i++)
        sum = sum - h[i] + ' ';
    return stored == (long long)sum;
}

/* An int shared through `shared` (scan.py's `share`), as a new reference. */
static PyObject *
shared_int(PyObject *shared, long long value)
{
    PyObject *v = PyLong_FromLongLong(value);
    if (v == NULL)
        return NULL;
    PyObject *kept = PyDict_SetDefault(shared, v, v);  /* borrowed */
    Py_XINCREF(kept);
    Py_DECREF(v);
    return kept;
}

/* Entry(path, kind, mode, uid, gid, size, tar_size, mtime, link, digest, (), 0, 0), without __init__. */
static PyObject *
make_entry(PyObject *values[13])
{
    PyTypeObject *type = (PyTypeObject *)entry_type;
    PyObject *obj = type->tp_alloc(type, 0);
    if (obj == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < 13; i++) {
        PyObject *descr = PyTuple_GET_ITEM(setters, i);
        if (Py_TYPE(descr)->tp_descr_set(descr, obj, values[i]) < 0) {
            Py_DECREF(obj);
            return NULL;
        }
    }
    return obj;
}

/*
 * run(view, pos, end, entries, shared, written, index) -> position of the first entry not taken.
 *
 * `written` (or None) is called with (path, replaces) for every entry, as scan.py
 * calls its live whiteouts' `written`; `index` (or None) with the path, as its
 * child index; both only exist once a layer has whiteouts or replaced a path.
 */
static PyObject *
run(PyObject *self, PyObject *args)
{
    PyObject *view, *entries, *shared, *written, *index;
    Py_ssize_t pos, end;
    if (!PyArg_ParseTuple(args, "OnnO!O!OO", &view, &pos, &end, &PyDict_Type, &entries, &PyDict_Type, &shared,
                          &written, &index))
        return NULL;
    if (entry_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "run: configure() was not called");
        return NULL;
    }
    Py_buffer buf;
    if (PyObject_GetBuffer(view, &buf, PyBUF_SIMPLE) < 0)
        return NULL;
    if (pos < 0 || end < pos || end > buf.len) {
        PyBuffer_Release(&buf);
        PyErr_SetString(PyExc_ValueError, "run: positions outside the buffer");
        return NULL;
    }
    const unsigned char *base = (const unsigned char *)buf.buf;
    char name[1 + 155 + 1 + 100 + 1];
    int failed = 0;

    while (end - pos >= BLOCK) {
        const unsigned char *h = base + pos;
        unsigned char type = h[156];
        int is_file = type == '0' || type == 0 || type == '7';
        if (!is_file && type != '5' && type != '2')
            break;
        if (!plain_checksum(h))
            break;
        long long mode = octal(h + 100, 7), uid = octal(h + 108, 7), gid = octal(h + 116, 7);
        long long size = octal(h + 124, 11), mtime = octal(h + 136, 11);
        if (mode < 0 || uid < 0 || gid < 0 || size < 0 || mtime < 0)
            break;
        if (!is_file)
            size = 0; /* a header-only type: Go's archive/tar reads no data, whatever the header says */
        long long padded = (size + BLOCK - 1) & ~(long long)(BLOCK - 1);
        if (padded > end - pos - BLOCK)
            break; /* the data is not all here: the Python loop reads on */

        /* The raw name: prefix "/" name when a ustar prefix is set, then leading slashes dropped. */
        size_t nlen = strnlen((const char *)h, 100);
        size_t len = 0;
        if (h[345] && memcmp(h + 257, "ustar\0", 6) == 0) {
            size_t plen = strnlen((const char *)h + 345, 155);
            if (plen) {
                memcpy(name, h + 345, plen);
                name[plen] = '/';
                len = plen + 1;
            }
        }
        memcpy(name + len, h, nlen);
        len += nlen;
        size_t start = 0;
        while (start < len && name[start] == '/')
            start++;
        /* "./x" (tar -C dir -c .): normpath's "/x", which is the rest's own rule when the rest is plain. */
        if (len - start > 2 && name[start] == '.' && name[start + 1] == '/' && name[start + 2] != '/')
            start += 2;
        if (start == len || name[start] == '.')
            break;
        int odd = 0;
        for (size_t i = start; i + 1 < len; i++) {
            if (name[i] == '/' && (name[i + 1] == '.' || name[i + 1] == '/')) {
                odd = 1;
                break;
            }
        }
        if (odd)
            break;
        while (len > start && name[len - 1] == '/')
            len--;
        char full[sizeof name + 1];
        full[0] = '/';
        memcpy(full + 1, name + start, len - start);
        PyObject *path = PyUnicode_FromStringAndSize(full, (Py_ssize_t)(len - start + 1));
        if (path == NULL) {
            failed = 1;
            break;
        }
        int known = PyDict_Contains(entries, path);
        int stargz = known == 0 ? PySet_Contains(estargz_names, path) : 0;
        if (known != 0 || stargz != 0) {
            Py_DECREF(path);
            if (known < 0 || stargz < 0)
                failed = 1;
            break;
        }

        PyObject *kind = is_file ? kind_file : (type == '5' ? kind_dir : kind_symlink);
        PyObject *link = NULL, *digest = NULL, *size_obj = NULL, *tar_size = NULL;
        PyObject *mode_obj = NULL, *uid_obj = NULL, *gid_obj = NULL, *mtime_obj = NULL, *entry = NULL;
        const unsigned char *data = h + BLOCK;
        if (is_file) {
            PyObject *mv = PyMemoryView_FromMemory((char *)data, (Py_ssize_t)size, PyBUF_READ);
            if (mv != NULL) {
                digest = PyObject_CallOneArg(hexdigest, mv);
                Py_DECREF(mv);
            }
            link = Py_NewRef(empty_str);
            size_obj = PyLong_FromLongLong(size);
            tar_size = Py_XNewRef(size_obj);
        }
        else if (type == '2') {
            size_t llen = strnlen((const char *)h + 157, 100);
            link = PyUnicode_FromStringAndSize((const char *)h + 157, (Py_ssize_t)llen);
            digest = Py_NewRef(empty_str);
            size_obj = PyLong_FromSsize_t((Py_ssize_t)llen); /* ASCII: characters are bytes */
            tar_size = Py_NewRef(zero);
        }
        else {
            link = Py_NewRef(empty_str);
            digest = Py_NewRef(empty_str);
            size_obj = Py_NewRef(zero);
            tar_size = Py_NewRef(zero);
        }
        mode_obj = shared_int(shared, mode & 07777);
        mtime_obj = shared_int(shared, mtime);
        uid_obj = uid > 256 ? shared_int(shared, uid) : PyLong_FromLongLong(uid);
        gid_obj = gid > 256 ? shared_int(shared, gid) : PyLong_FromLongLong(gid);
        if (link && digest && size_obj && tar_size && mode_obj && mtime_obj && uid_obj && gid_obj) {
            if (written != Py_None) {
                PyObject *r = PyObject_CallFunctionObjArgs(written, path, type == '5' ? Py_False : Py_True, NULL);
                if (r == NULL)
                    failed = 1;
                Py_XDECREF(r);
            }
            if (!failed) {
                PyObject *values[13] = {path, kind, mode_obj, uid_obj, gid_obj, size_obj, tar_size,
                                        mtime_obj, link, digest, empty_tuple, zero, zero};
                entry = make_entry(values);
            }
        }
        if (entry == NULL || PyDict_SetItem(entries, path, entry) < 0)
            failed = 1;
        if (!failed && index != Py_None) {
            PyObject *r = PyObject_CallOneArg(index, path);
            if (r == NULL)
                failed = 1;
            Py_XDECREF(r);
        }
        Py_XDECREF(entry);
        Py_XDECREF(link);
        Py_XDECREF(digest);
        Py_XDECREF(size_obj);
        Py_XDECREF(tar_size);
        Py_XDECREF(mode_obj);
        Py_XDECREF(mtime_obj);
        Py_XDECREF(uid_obj);
        Py_XDECREF(gid_obj);
        Py_DECREF(path);
        if (failed)
            break;
        pos += BLOCK + (Py_ssize_t)padded;
    }
    PyBuffer_Release(&buf);
    if (failed)
        return NULL;
    return PyLong_FromSsize_t(pos);
}

static PyMethodDef methods[] = {
    {"configure", configure, METH_VARARGS,
     "configure(Entry, setters, FILE, DIR, SYMLINK, estargz_names, hexdigest): what run() builds with."},
    {"run", run, METH_VARARGS,
     "run(view, pos, end, entries, shared, written, index) -> the position of the first entry not taken."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_tarscan", "Fast path of imgscope's tar scanner.", -1,
                                    methods};

PyMODINIT_FUNC
PyInit__tarscan(void)
{
    empty_str = PyUnicode_FromStringAndSize("", 0);
    empty_tuple = PyTuple_New(0);
    zero = PyLong_FromLong(0);
    if (empty_str == NULL || empty_tuple == NULL || zero == NULL)
        return NULL;
    return PyModule_Create(&module);
}
