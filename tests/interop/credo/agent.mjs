#!/usr/bin/env node
// One credo-ts 0.5.19 agent, driven by JSON lines: commands on stdin, answers and events on stdout
// (one JSON object per line), logs on stderr. Used by tests/src/credo.rs. The protocol (the
// command list) and the logic are in ./agent-core.mjs, shared with the 0.6.3 agent
// (../credo-0.6/agent.mjs); this file is what is particular to credo-ts 0.5.19.

import { runAgent } from './agent-core.mjs'
import { inMemoryWalletConfig, loadCredo, logLevel, traceMessages } from './common.mjs'

await runAgent({
  version: '0.5.19',
  defaultNumalgo: 1,
  load: loadCredo, // { core, node, askar, ariesAskar }
  names: ({ core }) => ({
    BasicMessageStateChanged: core.BasicMessageEventTypes.BasicMessageStateChanged,
    BasicMessageReceiver: core.BasicMessageRole.Receiver,
    ConnectionStateChanged: core.ConnectionEventTypes.ConnectionStateChanged,
    MediationStateChanged: core.RoutingEventTypes.MediationStateChanged,
    RecipientKeylistUpdated: core.RoutingEventTypes.RecipientKeylistUpdated,
    MessagePickupCompleted: core.MessagePickupEventTypes.MessagePickupCompleted,
    OutboundWebSocketOpened: core.TransportEventTypes.OutboundWebSocketOpenedEvent,
    OutboundWebSocketClosed: core.TransportEventTypes.OutboundWebSocketClosedEvent,
    MessageSent: core.AgentEventTypes.AgentMessageSent,
    MessageProcessed: core.AgentEventTypes.AgentMessageProcessed,
    MediatorPickupStrategy: core.MediatorPickupStrategy,
    HandshakeProtocol: core.HandshakeProtocol,
    PeerDidNumAlgo: core.PeerDidNumAlgo,
    parseInvitationUrl: core.utils.parseInvitationUrl,
  }),
  createAgent({ core, node, askar, ariesAskar }, options) {
    const agent = new core.Agent({
      config: {
        label: options.label,
        walletConfig: inMemoryWalletConfig(core, ariesAskar, options.storeId),
        endpoints: options.endpoints,
        logger: new core.ConsoleLogger(logLevel(core, options.logLevel)),
        processDidCommMessagesConcurrently: options.processMessagesConcurrently,
      },
      dependencies: node.agentDependencies,
      modules: {
        askar: new askar.AskarModule({ ariesAskar }),
        connections: new core.ConnectionsModule({
          autoAcceptConnections: true,
          peerNumAlgoForDidExchangeRequests: options.numAlgo,
        }),
        mediationRecipient: new core.MediationRecipientModule({
          mediatorInvitationUrl: options.mediatorUrl,
          mediatorPickupStrategy: options.pickupStrategy,
          mediatorPollingInterval: options.pollingIntervalMs,
        }),
      },
    })
    agent.registerOutboundTransport(new core.HttpOutboundTransport())
    agent.registerOutboundTransport(new core.WsOutboundTransport())
    if (options.inboundPort) {
      agent.registerInboundTransport(new node.HttpInboundTransport({ port: options.inboundPort }))
    }
    return agent
  },
  // 0.5: the DIDComm APIs are the agent's own (agent.oob, agent.connections, agent.config, …).
  didcommApi: (agent) => agent,
  traceMessages: (agent, { core }) => traceMessages(agent, core),
})
