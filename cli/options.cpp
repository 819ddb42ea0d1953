#include "cli/options.h"

#include <cstdio>
#include <filesystem>
#include <thread>

#include "topk/core.h"

namespace topk::cli {

CLI::Option* add_seed(CLI::App& app, const std::string& name, uint64_t& var,
                      const std::string& help) {
  return app.add_option_function<std::string>(
      name, [&var, name](const std::string& s) { var = parse_u64(s, name); }, help)->type_name("S");
}

int max_threads() { return 4 * int(std::max(1u, std::thread::hardware_concurrency())); }

CLI::Option* add_threads(CLI::App& app, int& var) {
  return add_int(app, "--threads", var, 1, max_threads(),
                 "OpenMP threads (default: all cores; at most 4x the cores)");
}

CLI::Option* add_text(CLI::App& app, const std::string& name, std::string& var,
                      const std::string& help) {
  return app.add_option(name, var, help)->allow_extra_args(false);
}

CLI::Option* add_device(CLI::App& app, std::string& var, const char* dflt) {
  return add_text(app, "--device", var, std::string("where the model runs: cpu, cuda or auto (cuda "
                  "when a GPU is present); default ") + dflt)
      ->check(CLI::IsMember({"cpu", "cuda", "auto"}));
}

int parse(CLI::App& app, int argc, char** argv) {
  const std::string& cmd = app.get_name();
  app.allow_extras();  // leftovers are reported below, in plainer words than CLI11's
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::fputs(app.help().c_str(), stdout);
    return 0;
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "%s: error: %s (see %s --help)\n", cmd.c_str(), e.what(), cmd.c_str());
    return 2;
  }
  for (const std::string& a : app.remaining()) {
    std::fprintf(stderr, "%s: error: %s '%s' (see %s --help)\n", cmd.c_str(),
                 a.size() > 1 && a[0] == '-' ? "unknown option" : "unexpected argument",
                 a.c_str(), cmd.c_str());
    return 2;
  }
  return -1;
}

void check_output_file(const std::string& path, const std::string& flag) {
  namespace fs = std::filesystem;
  std::error_code ec;
  TOPK_CHECK(!fs::is_directory(path, ec), "%s %s is a folder; give a file path (e.g. %s/out.jsonl)",
             flag.c_str(), path.c_str(), path.c_str());
  fs::path dir = fs::path(path).parent_path();
  TOPK_CHECK(dir.empty() || fs::is_directory(dir, ec), "%s %s: folder %s does not exist",
             flag.c_str(), path.c_str(), dir.c_str());
}

}  // namespace topk::cli
