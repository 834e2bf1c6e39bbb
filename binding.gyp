{
  "targets": [
    {
      "target_name": "nsbox",
      "sources": [
        "src-cc/core/child.cc",
        "src-cc/core/spawn.cc",
        "src-cc/core/pty.cc",
        "src-cc/core/fdpass.cc",
        "src-cc/core/hostmount.cc",
        "src-cc/core/security.cc",
        "src-cc/core/fsat.cc",
        "src-cc/binding/binding.cc",
        "src-cc/binding/fsat.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "src-cc"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NAPI_DISABLE_CPP_EXCEPTIONS",
        "NODE_ADDON_API_DISABLE_DEPRECATED",
        "_GNU_SOURCE"
      ],
      "cflags!": [ "-fno-exceptions" ],
      "cflags_cc!": [ "-fno-exceptions", "-std=gnu++17" ],
      "cflags": [ "-fvisibility=hidden", "-Wall", "-Wextra", "-fno-strict-aliasing" ],
      "cflags_cc": [ "-std=c++20", "-fvisibility=hidden", "-fno-exceptions", "-Wall", "-Wextra" ],
      "conditions": [
        [ "OS!='linux'", { "type": "none" } ],
        [ "\"<!(echo $NSBOX_WERROR)\"=='1'", {
          "cflags": [ "-Werror" ],
          "cflags_cc": [ "-Werror" ]
        } ]
      ]
    }
  ]
}
