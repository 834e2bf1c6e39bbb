// The monitor mode of nsbox-init's program (monitor.cc): argv[1] == "monitor".
#pragma once

namespace nsbox::init {

[[noreturn]] void monitor_main(int argc, char** argv);

}  // namespace nsbox::init
