// PNG plots of an eval report through gnuplot (a generated script, no Python): accuracy vs rho
// per task (acc_vs_rho.png) and accuracy vs retrieval precision of the oracle selector
// (acc_vs_precision.png). Without gnuplot on the PATH the plots are skipped with a note.
#pragma once
#include <string>
#include <vector>

#include "eval/eval.h"

namespace topk::eval {

// Returns one note per plot: written, or why it was skipped. Never throws for a missing gnuplot.
std::vector<std::string> write_plots(const Report& r, const std::string& dir);

}  // namespace topk::eval
