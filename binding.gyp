{
  "targets": [
    {
      "target_name": "wasm_cow",
      "sources": [
        "native/wasm_cow.c",
        "native/image_table.c",
        "native/reset.c",
        "native/reset_queue.c",
        "native/pages.c",
        "native/fault.c"
      ],
      "cflags_c": ["-std=gnu11", "-Wall", "-Wextra", "-Werror=implicit-function-declaration", "-O2"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
