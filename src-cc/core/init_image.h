// nsbox-init (src-cc/init/), embedded in the addon at build time, as an executable fd.
#pragma once

namespace nsbox {

// A new sealed memfd (close-on-exec) holding nsbox-init: sealed, so no process that can reach
// it (a container's /proc/1/exe) can change it. Returns the fd, or -errno. The binding keeps
// one per Node environment and passes it to spawn().
int make_init_image();

}  // namespace nsbox
