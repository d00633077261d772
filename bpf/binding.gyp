{
  "targets": [
    {
      "target_name": "skein",
      "sources": [
        "src/addon.cc",
        "src/errors.cc",
        "src/netns.cc",
        "src/sockets.cc",
        "src/seqpacket.cc",
        "src/poller.cc",
        "src/libbpf.cc",
        "src/ebpf.cc",
        "src/bpffs.cc",
        "src/process.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=9", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++20", "-Wall", "-Wextra", "-Werror"],
      "libraries": ["-lbpf"]
    },
    {
      "target_name": "skein_hbone",
      "sources": [
        "src/errors.cc",
        "src/hbone/acceptor.cc",
        "src/hbone/binding.cc",
        "src/hbone/engine.cc",
        "src/hbone/ktls.cc",
        "src/hbone/tls.cc",
        "src/hbone/worker.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=9", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++20", "-Wall", "-Wextra", "-Werror"],
      "libraries": ["-lnghttp2"]
    }
  ]
}
