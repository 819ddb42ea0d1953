#include "eval/plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>

#include "core/json.h"
#include "model/policy.h"

namespace topk::eval {

namespace {

bool have_gnuplot() { return std::system("gnuplot --version > /dev/null 2>&1") == 0; }

using Series = std::map<std::string, std::vector<std::pair<double, double>>>;  // label -> (x, y)

std::string series_label(const Report& r, const Cell& c, const std::string& extra) {
  std::string s = c.task;
  if (r.opts.lengths.size() > 1) s += " @" + std::to_string(c.length);
  return s + extra;
}

// Runs gnuplot on a script that writes out.tmp, then renames it to out.
std::string plot(const std::string& out, const std::string& title, const std::string& xlabel,
                 bool logx, const Series& series) {
  std::string script = "set terminal pngcairo size 800,560 font 'sans,11'\n"
                       "set output '" + out + ".tmp'\n"
                       "set title '" + title + "'\nset xlabel '" + xlabel + "'\n"
                       "set ylabel 'score (0-100)'\nset yrange [0:105]\nset grid\n"
                       "set key bottom right\n";
  if (logx) script += "set logscale x\n";
  std::string plots, data;
  for (const auto& [label, pts] : series) {
    plots += std::string(plots.empty() ? "plot " : ", ") + "'-' using 1:2 with linespoints lw 2 "
             "pt 7 title '" + label + "'";
    auto sorted = pts;
    std::sort(sorted.begin(), sorted.end());
    for (auto [x, y] : sorted) data += std::to_string(x) + " " + std::to_string(y) + "\n";
    data += "e\n";
  }
  script += plots + "\n" + data;
  const std::string sp = out + ".gp";
  write_file_atomic(sp, script);
  int rc = std::system(("gnuplot '" + sp + "' 2> '" + out + ".log'").c_str());
  std::remove(sp.c_str());
  if (rc != 0) return "plot " + out + " failed (gnuplot exit " + std::to_string(rc) + "; see " +
                      out + ".log)";
  std::remove((out + ".log").c_str());
  if (std::rename((out + ".tmp").c_str(), out.c_str()) != 0) return "plot " + out + ": rename failed";
  return "wrote " + out;
}

}  // namespace

std::vector<std::string> write_plots(const Report& r, const std::string& dir) {
  if (!have_gnuplot())
    return {"plots skipped: gnuplot is not installed (Debian: apt-get install gnuplot-nox)"};
  std::vector<std::string> notes;
  Series rho, prec;
  for (const Cell& c : r.cells) {
    AttnPolicy p = parse_policy(c.policy);
    if (p.kind == PolicyKind::full || (p.kind == PolicyKind::topk && !p.sel.share_group))
      rho[series_label(r, c, "")].push_back({c.rho, c.score});
    else if (p.kind == PolicyKind::topk)
      rho[series_label(r, c, " (share=group)")].push_back({c.rho, c.score});
    if (p.kind == PolicyKind::oracle) prec[series_label(r, c, "")].push_back({c.precision, c.score});
    // The real selectors beside the oracle's curve: one series per selector kind.
    if (p.kind == PolicyKind::indexer || p.kind == PolicyKind::quest ||
        p.kind == PolicyKind::qkeys || p.kind == PolicyKind::window)
      prec[series_label(r, c, std::string(" ") + policy_kind_name(p.kind))].push_back({c.precision, c.score});
  }
  if (rho.empty()) notes.push_back("acc_vs_rho.png skipped: no full or topk policy");
  else notes.push_back(plot(dir + "/acc_vs_rho.png", "top-k decoding: score vs rho",
                            "rho = W / n (mean over decode steps)", true, rho));
  if (prec.empty()) notes.push_back("acc_vs_precision.png skipped: no oracle or approximate selector");
  else notes.push_back(plot(dir + "/acc_vs_precision.png", "selectors: score vs precision",
                            "retrieval precision (measured)", false, prec));
  return notes;
}

}  // namespace topk::eval
