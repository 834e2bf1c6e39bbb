// What a detached container's monitor (src-cc/init/monitor.cc) tells the process that started
// it (src-cc/core/spawn.cc, spawn_detached), once, on the status pipe. Header-only and free of
// the C++ library: the monitor is built without one.
#pragma once

#include <stdint.h>

#include "common/report.h"

namespace nsbox {

struct DetachStart {
  int32_t monitor_pid;    // the monitor: the container's supervisor from now on
  int32_t container_pid;  // nsbox-init, the container's PID 1 (0: never cloned)
  // The container's first report: kStarted, or kFailed. A setup process that died without
  // one: kind 0 and `vanished` its wait status.
  Report report;
  int32_t vanished;
  int32_t pad;
};

}  // namespace nsbox
