// The `bulkhead` command line: global options, command dispatch, exit statuses.
//
// Exit status (DESIGN.md): 0 every target done; 1 some target failed or the controller is
// unreachable (each failure said); 2 bad usage or input (nothing changed).
#pragma once

#include <chrono>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/completion.h"

namespace bulkhead::cli {

enum ExitCode : int { kOk = 0, kFailed = 1, kUsage = 2 };

struct GlobalOptions {
  std::string controller;        // ADDR:PORT[,ADDR:PORT...]; --controller or $BULKHEAD_CONTROLLER
  std::string identity;          // DIR; --identity or $BULKHEAD_IDENTITY
  std::string tenant;            // NAME or "*"; --tenant or $BULKHEAD_TENANT; empty: not chosen
  std::string incident;          // ID; --incident or $BULKHEAD_INCIDENT; empty: none
  // TLS name in the controller cert. Unless given (controller_name_given), the identity's
  // controller-name file wins over this default.
  std::string controller_name = "bulkhead-controller";
  bool controller_name_given = false;
  bool json = false;
  std::chrono::milliseconds timeout{10'000};
  // Where lines about the connection go that do not end the command (a controller skipped for
  // the next one): runCli points it at io.err.
  std::ostream* notes = &std::cerr;
};

struct Io {
  std::ostream& out;
  std::ostream& err;
  // Set while the command is described rather than run (describeCommand): parseCommandArgs
  // stores the command's flags here, then answers as for --help.
  std::vector<ShellFlag>* described_flags = nullptr;
};

// A command takes its own arguments (everything after the command name) and returns an exit
// code. It prints its result on io.out and errors (one clear line each) on io.err.
using CommandFn =
    std::function<int(const GlobalOptions&, const std::vector<std::string>& args, Io& io)>;

struct CommandInfo {
  std::string summary;
  CommandFn run;
};

// The full command table (name -> command). Multi-word commands ("pki init", "evidence list")
// are keyed by their words joined with a space.
const std::map<std::string, CommandInfo>& commands();

// Runs the CLI on argv (without the program name). Never throws.
int runCli(const std::vector<std::string>& argv, Io& io);

// The flags of command `name` (a key of commands()) besides the global ones, from the options
// it parses: the command is run with --help (no side effects, nothing printed). Empty for a
// command that parses no options (a group such as "evidence").
std::vector<ShellFlag> describeCommand(const std::string& name);

// The global options (before or after the command).
std::vector<ShellFlag> globalFlags();

// The bash completion of `bulkhead` (printed by `bulkhead completion bash`, which is not in
// commands()): every command of commands(), each with its own flags and the global ones.
ShellCompletion bulkheadCompletion();

// Registration hooks, one per command family.
void addPkiCommands(std::map<std::string, CommandInfo>& table);
void addHostCommands(std::map<std::string, CommandInfo>& table);
void addContainmentCommands(std::map<std::string, CommandInfo>& table);
void addBlockCommands(std::map<std::string, CommandInfo>& table);
void addPolicyCommands(std::map<std::string, CommandInfo>& table);
void addSessionCommands(std::map<std::string, CommandInfo>& table);
void addEvidenceCommands(std::map<std::string, CommandInfo>& table);
void addSignalCommands(std::map<std::string, CommandInfo>& table);
void addIntegrationCommands(std::map<std::string, CommandInfo>& table);
void addTokenCommands(std::map<std::string, CommandInfo>& table);
void addTenantCommands(std::map<std::string, CommandInfo>& table);
void addIncidentCommands(std::map<std::string, CommandInfo>& table);
void addNotifyCommands(std::map<std::string, CommandInfo>& table);

}  // namespace bulkhead::cli
