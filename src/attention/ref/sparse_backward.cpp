#include "attention/ref/common.h"

namespace topk::ref {

void sparse_backward(const AttnParams& p) { backward_rows(p, true); }

}  // namespace topk::ref
