// Command-line options of every subcommand: CLI11 for the options themselves, topk's strict
// parser (src/core/check.h) for every number (CLI11's own takes 0x10 and 010 as integers and
// nan as a real), one exit path for usage errors.
#pragma once
#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "core/check.h"

namespace topk::cli {

// An integer option: the whole value is a base-10 integer in [lo, hi].
template <class T>
CLI::Option* add_int(CLI::App& app, const std::string& name, T& var, int64_t lo, int64_t hi,
                     const std::string& help) {
  return app.add_option_function<std::string>(
      name, [&var, name, lo, hi](const std::string& s) { var = T(parse_int(s, name, lo, hi)); },
      help)->type_name("N");
}

// A real option: a finite number in `r`.
template <class T>
CLI::Option* add_real(CLI::App& app, const std::string& name, T& var, const Range& r,
                      const std::string& help) {
  return app.add_option_function<std::string>(
      name, [&var, name, r](const std::string& s) { var = T(parse_real(s, name, r)); },
      help)->type_name("X");
}

// A list option "1,2,3": every item a base-10 integer in [lo, hi]; it replaces the default.
template <class T>
CLI::Option* add_int_list(CLI::App& app, const std::string& name, std::vector<T>& var, int64_t lo,
                          int64_t hi, const std::string& help) {
  return app.add_option_function<std::string>(
      name, [&var, name, lo, hi](const std::string& s) {
        var.clear();
        for (int64_t v : parse_int_list(s, name, lo, hi)) var.push_back(T(v));
      }, help)->type_name("LIST");
}

CLI::Option* add_seed(CLI::App& app, const std::string& name, uint64_t& var,
                      const std::string& help);
// --threads N: OpenMP threads, in [1, 4 x the cores] (more only adds contention, and an
// absurd count crashes the OpenMP runtime).
CLI::Option* add_threads(CLI::App& app, int& var);
int max_threads();

// A string option taking exactly one value per occurrence (repeat the option for more).
CLI::Option* add_text(CLI::App& app, const std::string& name, std::string& var,
                      const std::string& help);

// --device cpu|cuda|auto (auto: cuda when a GPU is present); parse_device checks that the
// device exists. `dflt` names the default in the help.
CLI::Option* add_device(CLI::App& app, std::string& var, const char* dflt = "auto");

// Parses argv (argv[0] = the subcommand). Returns -1 when the command should run, else its exit
// code: 0 after --help (printed to stdout), 2 after a usage error (one line on stderr naming
// the option, then where help is).
int parse(CLI::App& app, int argc, char** argv);

// An output file given on the command line: not a folder, and its folder exists, so a run
// fails before its work rather than after it (and leaves no PATH.tmp behind).
void check_output_file(const std::string& path, const std::string& flag);

}  // namespace topk::cli
