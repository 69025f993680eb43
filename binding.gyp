{
  "targets": [
    {
      "target_name": "wasm_cow",
      "sources": ["native/wasm_cow.c", "native/pages.c"],
      "cflags_c": ["-std=gnu11", "-Wall", "-Wextra", "-Werror=implicit-function-declaration", "-O2"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
