#include "attention/ref/common.h"

namespace topk::ref {

void sparse_forward(const AttnParams& p) { forward_rows(p, true); }

}  // namespace topk::ref
