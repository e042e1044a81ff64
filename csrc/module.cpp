// Python module of the compiled extension. Importing funknn_fast._C loads this library, whose
// static initialisers register the funknn_fast::* operators with the PyTorch dispatcher; the
// module itself exposes nothing.
#include <Python.h>

extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}
