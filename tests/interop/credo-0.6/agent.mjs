#!/usr/bin/env node
// One credo-ts 0.6.3 agent (DIDComm in @credo-ts/didcomm), driven by JSON lines: commands on stdin,
// answers and events on stdout (one JSON object per line), logs on stderr. Used by
// tests/src/credo.rs (`CredoVersion::V0_6`). The protocol (the command list) and the logic are the
// 0.5.19 agent's, ../credo/agent-core.mjs, so the same Rust driver runs either; this file is what
// is particular to credo-ts 0.6.3.

import { runAgent } from '../credo/agent-core.mjs'
import { inMemoryStore, loadCredo, logLevel, traceMessages } from './common.mjs'

await runAgent({
  version: '0.6.3',
  // credo 0.6's own default for DID Exchange requests
  defaultNumalgo: 4,
  load: loadCredo, // { core, didcomm, node, askar, askarLib, askarVersion }
  names: ({ core, didcomm }) => ({
    BasicMessageStateChanged: didcomm.DidCommBasicMessageEventTypes.DidCommBasicMessageStateChanged,
    BasicMessageReceiver: didcomm.DidCommBasicMessageRole.Receiver,
    ConnectionStateChanged: didcomm.DidCommConnectionEventTypes.DidCommConnectionStateChanged,
    MediationStateChanged: didcomm.DidCommRoutingEventTypes.MediationStateChanged,
    RecipientKeylistUpdated: didcomm.DidCommRoutingEventTypes.RecipientKeylistUpdated,
    MessagePickupCompleted: didcomm.DidCommMessagePickupEventTypes.MessagePickupCompleted,
    OutboundWebSocketOpened: didcomm.DidCommTransportEventTypes.DidCommOutboundWebSocketOpenedEvent,
    OutboundWebSocketClosed: didcomm.DidCommTransportEventTypes.DidCommOutboundWebSocketClosedEvent,
    MessageSent: didcomm.DidCommEventTypes.DidCommMessageSent,
    MessageProcessed: didcomm.DidCommEventTypes.DidCommMessageProcessed,
    MediatorPickupStrategy: didcomm.DidCommMediatorPickupStrategy,
    HandshakeProtocol: didcomm.DidCommHandshakeProtocol,
    PeerDidNumAlgo: core.PeerDidNumAlgo,
    parseInvitationUrl: didcomm.parseInvitationUrl,
  }),
  createAgent({ core, didcomm, node, askar, askarLib }, options) {
    // 0.6: no agent label (each invitation and request carries it: agent-core passes it) and
    // everything DIDComm is one module, with its transports.
    return new core.Agent({
      config: {
        logger: new core.ConsoleLogger(logLevel(core, options.logLevel)),
      },
      dependencies: node.agentDependencies,
      modules: {
        askar: new askar.AskarModule({ askar: askarLib, store: inMemoryStore(askarLib, options.storeId) }),
        didcomm: new didcomm.DidCommModule({
          endpoints: options.endpoints,
          transports: {
            inbound: options.inboundPort ? [new node.DidCommHttpInboundTransport({ port: options.inboundPort })] : [],
            outbound: [new didcomm.DidCommHttpOutboundTransport(), new didcomm.DidCommWsOutboundTransport()],
          },
          processDidCommMessagesConcurrently: options.processMessagesConcurrently,
          connections: {
            autoAcceptConnections: true,
            peerNumAlgoForDidExchangeRequests: options.numAlgo,
          },
          mediationRecipient: {
            mediatorInvitationUrl: options.mediatorUrl,
            mediatorPickupStrategy: options.pickupStrategy,
            mediatorPollingInterval: options.pollingIntervalMs,
          },
          // Not used here, and the credential and proof protocols want format services.
          credentials: false,
          proofs: false,
        }),
      },
    })
  },
  didcommApi: (agent) => agent.didcomm,
  traceMessages: (agent, { didcomm }) => traceMessages(agent, didcomm),
})
