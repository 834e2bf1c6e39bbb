#include "core/security.h"

namespace nsbox {

SecurityFailure apply_security(const Security&) { return {Sys::kNone, 0}; }

}  // namespace nsbox
