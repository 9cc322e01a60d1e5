// Notification channels (the controller's POLICY_DIR/notifications/*.yaml;
// controller/notify/):
//   bulkhead notify channels         each channel of the tenant, with its queue
//   bulkhead notify test CHANNEL     a test event sent to CHANNEL now; fails naming why when
//                                    the receiver did not accept it
#include <fmt/format.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "cli/operator_client.h"
#include "cli/output.h"

namespace po = boost::program_options;

namespace bulkhead::cli {
namespace {

namespace v1 = bulkhead::v1;

std::string kindsText(const v1::NotifyChannel& c) {
  if (c.kinds_size() == 0) return "all";
  std::string out;
  for (const std::string& k : c.kinds()) out += (out.empty() ? "" : ",") + k;
  return out;
}

int notifyChannels(const GlobalOptions& g, const std::vector<std::string>& args, Io& io) {
  po::options_description opts("notify channels");
  po::positional_options_description pos;
  po::variables_map vm;
  bool help = false;
  if (!parseCommandArgs("notify channels", args, opts, pos, vm, io, &help)) {
    return help ? kOk : kUsage;
  }
  return callAndPrint<v1::ListNotifyChannelsResponse>(
      "notify channels", g, io,
      [](auto& stub, grpc::ClientContext* ctx, v1::ListNotifyChannelsResponse* resp) {
        return stub.ListNotifyChannels(ctx, v1::ListNotifyChannelsRequest(), resp);
      },
      [&](const v1::ListNotifyChannelsResponse& resp) {
        if (resp.channels_size() == 0) {
          io.out << "no notification channels (the controller reads them from "
                    "POLICY_DIR/notifications/*.yaml)\n";
          return;
        }
        std::vector<std::vector<std::string>> rows = {{"CHANNEL", "TYPE", "DESTINATION", "KINDS",
                                                       "MIN SEVERITY", "PENDING", "DELIVERED",
                                                       "FAILED"}};
        std::vector<std::string> tenants;
        for (const v1::NotifyChannel& c : resp.channels()) {
          rows.push_back({c.name(), c.type(), c.destination(), kindsText(c), c.min_severity(),
                          std::to_string(c.pending()), std::to_string(c.delivered()),
                          std::to_string(c.failed())});
          tenants.push_back(c.tenant());
        }
        addTenantColumn(rows, 1, tenants);
        printTable(io.out, rows);
      });
}

int notifyTest(const GlobalOptions& g, const std::vector<std::string>& args, Io& io) {
  std::string channel;
  po::options_description opts("notify test CHANNEL");
  opts.add_options()("channel", po::value(&channel)->required(), "the channel's name");
  po::positional_options_description pos;
  pos.add("channel", 1);
  po::variables_map vm;
  bool help = false;
  if (!parseCommandArgs("notify test", args, opts, pos, vm, io, &help)) {
    return help ? kOk : kUsage;
  }
  v1::TestNotifyRequest req;
  req.set_channel(channel);
  return callAndPrint<v1::TestNotifyResponse>(
      "notify test", g, io,
      [&](auto& stub, grpc::ClientContext* ctx, v1::TestNotifyResponse* resp) {
        return stub.TestNotify(ctx, req, resp);
      },
      [&](const v1::TestNotifyResponse& resp) {
        io.out << fmt::format("test event delivered to {} ({} {})\n", resp.channel().name(),
                              resp.channel().type(), resp.channel().destination());
      });
}

}  // namespace

void addNotifyCommands(std::map<std::string, CommandInfo>& table) {
  table["notify channels"] = {"the notification channels of the tenant, with their queues",
                              notifyChannels};
  table["notify test"] = {"CHANNEL: send a test event to a notification channel now", notifyTest};
}

}  // namespace bulkhead::cli
