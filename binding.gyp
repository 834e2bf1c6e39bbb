{
  "targets": [
    {
      # nsbox-init: the container's PID 1 (src-cc/init/init.cc). A static program without a C
      # library, embedded into the addon below and exec'd from a sealed memfd.
      "target_name": "nsbox_init",
      "type": "executable",
      "sources": [
        "src-cc/init/init.cc",
        "src-cc/init/monitor.cc",
        "src-cc/init/security.cc"
      ],
      "include_dirs": [ "src-cc" ],
      "cflags!": [ "-fPIC", "-pthread", "-fno-omit-frame-pointer" ],
      "cflags_cc!": [ "-fPIC", "-pthread", "-std=gnu++17", "-fno-rtti", "-fno-exceptions" ],
      "ldflags!": [ "-pthread", "-rdynamic" ],
      "cflags_cc": [
        "-std=c++20", "-O2", "-Wall", "-Wextra",
        "-ffreestanding", "-fno-builtin", "-fno-exceptions", "-fno-rtti", "-fno-stack-protector",
        "-fno-asynchronous-unwind-tables", "-fno-unwind-tables", "-fno-threadsafe-statics", "-fno-pie"
      ],
      "ldflags": [ "-nostdlib", "-static", "-no-pie", "-Wl,--build-id=none", "-s" ],
      "conditions": [
        [ "OS!='linux'", { "type": "none" } ],
        [ "\"<!(echo $NSBOX_WERROR)\"=='1'", { "cflags_cc": [ "-Werror" ] } ]
      ]
    },
    {
      "target_name": "nsbox",
      "sources": [
        "src-cc/core/child.cc",
        "src-cc/core/spawn.cc",
        "src-cc/core/spawner.cc",
        "src-cc/core/init_image.cc",
        "src-cc/core/pty.cc",
        "src-cc/core/fdpass.cc",
        "src-cc/core/hostmount.cc",
        "src-cc/core/loopdev.cc",
        "src-cc/core/fsat.cc",
        "src-cc/core/extract.cc",
        "src-cc/core/tar.cc",
        "src-cc/core/tar_import.cc",
        "src-cc/core/devbpf.cc",
        "src-cc/core/exec.cc",
        "src-cc/core/exec_child.cc",
        "src-cc/core/xattr.cc",
        "src-cc/core/subid.cc",
        "src-cc/binding/binding.cc",
        "src-cc/binding/plan_reader.cc",
        "src-cc/binding/stdio.cc",
        "src-cc/binding/start.cc",
        "src-cc/binding/exit.cc",
        "src-cc/binding/host_calls.cc",
        "src-cc/binding/fsat.cc",
        "src-cc/binding/fsbatch.cc",
        "src-cc/binding/extract.cc",
        "src-cc/binding/tar.cc",
        "src-cc/binding/teardown.cc"
      ],
      "actions": [
        {
          "action_name": "embed_init",
          "inputs": [ "<(PRODUCT_DIR)/nsbox_init", "scripts/embed-init.js" ],
          "outputs": [ "<(INTERMEDIATE_DIR)/init_image.S" ],
          "action": [ "node", "scripts/embed-init.js", "<(PRODUCT_DIR)/nsbox_init", "<(INTERMEDIATE_DIR)/init_image.S" ],
          "process_outputs_as_sources": 1
        }
      ],
      # node-addon-api's own target (no C++ exceptions): its include directory and
      # NODE_ADDON_API_DISABLE_CPP_EXCEPTIONS come from it, as its version defines them.
      "dependencies": [ "nsbox_init", "<!(node -p \"require('node-addon-api').targets\"):node_addon_api" ],
      "include_dirs": [ "src-cc" ],
      "defines": [
        "NAPI_VERSION=8",
        "NODE_ADDON_API_DISABLE_DEPRECATED",
        # A worker terminated from another thread stops JS between any two calls: a call that
        # then fails must not be a fatal error of the whole process (node-addon-api makes one
        # when it cannot even build the error object).
        "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS",
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
