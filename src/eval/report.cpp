// Eval outputs: the stdout table, results.json, results.csv and layers.csv (all atomic).
#include <cmath>
#include <cstdio>

#include "core/json.h"
#include "eval/eval.h"
#include "eval/plot.h"

namespace topk::eval {

namespace {

std::string num(double v, const char* fmt = "%.4f") {
  if (std::isnan(v)) return "";
  char b[64];
  std::snprintf(b, sizeof b, fmt, v);
  return b;
}

json jnum(double v) { return std::isnan(v) ? json(nullptr) : json(v); }

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string r = "\"";
  for (char c : s) r += c == '"' ? std::string("\"\"") : std::string(1, c);
  return r + "\"";
}

// Predictions are raw bytes of a byte-level model: keep ASCII, write other bytes as \xNN so the
// JSON stays valid UTF-8.
std::string printable(const std::string& s) {
  std::string r;
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7f) r += char(c);
    else {
      char b[8];
      std::snprintf(b, sizeof b, "\\x%02x", unsigned(c));
      r += b;
    }
  }
  return r;
}

}  // namespace

std::string format_table(const Report& r) {
  std::string out;
  char line[512];
  std::snprintf(line, sizeof line, "%-12s %6s  %-34s %6s %7s %6s %6s %7s %6s\n", "task", "length",
                "policy", "rho", "score", "prec", "mass", "H", "H/lnS");
  out += line;
  for (const Cell& c : r.cells) {
    std::string prec = std::isnan(c.precision) ? "-" : num(c.precision, "%.3f");
    std::snprintf(line, sizeof line, "%-12s %6lld  %-34s %6.3f %7.1f %6s %6.3f %7.3f %6.3f\n",
                  c.task.c_str(), (long long)c.length, c.policy.c_str(), c.rho, c.score,
                  prec.c_str(), c.mass, c.entropy, c.entropy_norm);
    out += line;
  }
  return out;
}

static json layer_json(const LayerStats& l) {
  json j = {{"precision", jnum(l.precision)}, {"mass", l.mass}, {"entropy", l.entropy},
            {"entropy_norm", l.entropy_norm}};
  if (!l.head_mass.empty()) {
    json hp = json::array();
    for (double v : l.head_precision) hp.push_back(jnum(v));
    j["heads"] = {{"precision", hp}, {"mass", l.head_mass}, {"entropy", l.head_entropy},
                  {"entropy_norm", l.head_entropy_norm}};
  }
  return j;
}

std::vector<std::string> write_outputs(const Report& r, const std::string& dir) {
  std::vector<std::string> notes;
  const EvalOpts& o = r.opts;
  json j;
  j["model"] = r.model;
  j["layers"] = r.layers;
  j["heads"] = r.heads;
  j["protocol"] = {{"prefill", o.policy_prefill ? "policy" : "full"}, {"decode", "greedy"},
                   {"samples", o.samples}, {"seed", o.seed},
                   {"indexer_keys", o.indexer_fp8 ? "f8e4m3" : "compute dtype"}};
  j["tasks"] = o.tasks;
  j["lengths"] = o.lengths;
  j["policies"] = o.policies;
  j["seconds"] = r.seconds;
  json cells = json::array();
  for (const Cell& c : r.cells) {
    json layers = json::array(), preds = json::array();
    for (const auto& p : c.predictions) preds.push_back(printable(p));
    for (const LayerStats& l : c.layers) layers.push_back(layer_json(l));
    cells.push_back({{"task", c.task}, {"length", c.length}, {"policy", c.policy},
                     {"examples", c.examples}, {"score", c.score}, {"rho", c.rho},
                     {"precision", jnum(c.precision)}, {"mass", c.mass}, {"entropy", c.entropy},
                     {"entropy_norm", c.entropy_norm}, {"decode_steps", c.decode_steps},
                     {"context_tokens", c.context}, {"seconds", c.seconds}, {"layers", layers},
                     {"predictions", preds}});
  }
  j["results"] = cells;
  write_json_file(dir + "/results.json", j);
  std::string csv =
      "task,length,policy,examples,score,rho,precision,mass,entropy,entropy_norm,decode_steps,"
      "context_tokens,seconds\n";
  std::string lcsv = "task,length,policy,layer,head,precision,mass,entropy,entropy_norm\n";
  for (const Cell& c : r.cells) {
    std::string key = c.task + "," + std::to_string(c.length) + "," + csv_field(c.policy);
    csv += key + "," + std::to_string(c.examples) + "," + num(c.score) + "," + num(c.rho) + "," +
           num(c.precision) + "," + num(c.mass) + "," + num(c.entropy) + "," +
           num(c.entropy_norm) + "," + std::to_string(c.decode_steps) + "," +
           std::to_string(c.context) + "," + num(c.seconds, "%.3f") + "\n";
    for (size_t l = 0; l < c.layers.size(); l++) {
      const LayerStats& s = c.layers[l];
      lcsv += key + "," + std::to_string(l) + ",all," + num(s.precision) + "," + num(s.mass) +
              "," + num(s.entropy) + "," + num(s.entropy_norm) + "\n";
      for (size_t h = 0; h < s.head_mass.size(); h++)
        lcsv += key + "," + std::to_string(l) + "," + std::to_string(h) + "," +
                num(s.head_precision[h]) + "," + num(s.head_mass[h]) + "," +
                num(s.head_entropy[h]) + "," + num(s.head_entropy_norm[h]) + "\n";
    }
  }
  write_file_atomic(dir + "/results.csv", csv);
  write_file_atomic(dir + "/layers.csv", lcsv);
  notes.push_back("wrote " + dir + "/results.json, results.csv, layers.csv");
  for (auto& n : write_plots(r, dir)) notes.push_back(n);
  return notes;
}

}  // namespace topk::eval
