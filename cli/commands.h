// Subcommands of the topk tool. Each takes (argc, argv) with argv[0] = its own name.
#pragma once

namespace topk::cli {

int bench(int argc, char** argv);
int data(int argc, char** argv);
int demo(int argc, char** argv);
int eval(int argc, char** argv);
int generate(int argc, char** argv);
int train(int argc, char** argv);
int version(int argc, char** argv);

}  // namespace topk::cli
