#!/usr/bin/env node
// credo-ts 0.5.19 as a reference DIDComm v1 mediator (MediatorModule, mediation auto-granted), with
// HTTP and WebSocket inbound transports. Prints one JSON line on stdout when ready:
//   {"event":"ready","invitationUrl":"http://127.0.0.1:HTTP?oob=…","httpEndpoint":…,"wsEndpoint":…}
//
// Usage: node reference-mediator.mjs --http-port N --ws-port M [--host 127.0.0.1]
//        [--label credo-mediator] [--handshake both|didexchange|connections]
//        [--forwarding QueueAndLiveModeDelivery|QueueOnly|DirectDelivery] [--trace]
//        [--log-level warn]
// Commands on stdin (JSON lines, optional): {"id":1,"cmd":"stats"} → counts of what it processed;
// {"cmd":"shutdown"}. When stdin is a pipe, closing it stops the mediator (so a test that dies
// takes its mediator with it); otherwise it runs until SIGTERM / SIGINT.

import { fstatSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { randomUUID } from 'node:crypto'
import {
  emit,
  errorText,
  inMemoryWalletConfig,
  loadCredo,
  log,
  logLevel,
  readLines,
  setLogPrefix,
  traceMessages,
  withTimeout,
} from './common.mjs'

const { values: args } = parseArgs({
  options: {
    'http-port': { type: 'string' },
    'ws-port': { type: 'string' },
    host: { type: 'string', default: '127.0.0.1' },
    label: { type: 'string', default: 'credo-mediator' },
    handshake: { type: 'string', default: 'both' },
    forwarding: { type: 'string', default: 'QueueAndLiveModeDelivery' },
    trace: { type: 'boolean', default: false },
    'log-level': { type: 'string' },
  },
})

function fail(message) {
  log(message)
  emit({ event: 'error', error: message })
  process.exit(2)
}

const httpPort = Number(args['http-port'])
const wsPort = Number(args['ws-port'])
if (!Number.isInteger(httpPort) || !Number.isInteger(wsPort) || httpPort <= 0 || wsPort <= 0) {
  fail('usage: reference-mediator.mjs --http-port N --ws-port M [--host H] [--handshake both|didexchange|connections] [--forwarding …] [--trace]')
}
setLogPrefix(`[${args.label}] `)

let credo
try {
  credo = loadCredo()
} catch (error) {
  fail(errorText(error))
}
const { core, node, askar, ariesAskar } = credo

// MessageForwardingStrategy is not exported by @credo-ts/core 0.5.19; these are its values.
const forwardingStrategies = ['QueueOnly', 'QueueAndLiveModeDelivery', 'DirectDelivery']
if (!forwardingStrategies.includes(args.forwarding)) {
  fail(`unknown --forwarding ${args.forwarding}: ${forwardingStrategies.join(', ')}`)
}
const handshakeProtocols = {
  both: [core.HandshakeProtocol.DidExchange, core.HandshakeProtocol.Connections],
  didexchange: [core.HandshakeProtocol.DidExchange],
  connections: [core.HandshakeProtocol.Connections],
}[args.handshake]
if (!handshakeProtocols) fail(`unknown --handshake ${args.handshake}: both, didexchange or connections`)

const httpEndpoint = `http://${args.host}:${httpPort}`
const wsEndpoint = `ws://${args.host}:${wsPort}`
const started = Date.now()

const agent = new core.Agent({
  config: {
    label: args.label,
    walletConfig: inMemoryWalletConfig(core, ariesAskar, `${args.label}-${randomUUID()}`),
    endpoints: [httpEndpoint, wsEndpoint],
    logger: new core.ConsoleLogger(logLevel(core, args['log-level'] ?? process.env.CREDO_LOG_LEVEL)),
  },
  dependencies: node.agentDependencies,
  modules: {
    askar: new askar.AskarModule({ ariesAskar }),
    connections: new core.ConnectionsModule({ autoAcceptConnections: true }),
    mediator: new core.MediatorModule({
      autoAcceptMediationRequests: true,
      messageForwardingStrategy: args.forwarding,
    }),
  },
})
agent.registerInboundTransport(new node.HttpInboundTransport({ port: httpPort }))
agent.registerInboundTransport(new node.WsInboundTransport({ port: wsPort }))
agent.registerOutboundTransport(new core.HttpOutboundTransport())
agent.registerOutboundTransport(new core.WsOutboundTransport())
if (args.trace || process.env.CREDO_TRACE === '1') traceMessages(agent, core)

// Counts by message type, for `stats` (and as a performance baseline).
const processed = {}
const sent = {}
agent.events.on(core.AgentEventTypes.AgentMessageProcessed, (event) => {
  const type = event.payload.message?.type ?? '?'
  processed[type] = (processed[type] ?? 0) + 1
})
agent.events.on(core.AgentEventTypes.AgentMessageSent, (event) => {
  const key = `${event.payload.message.message?.type ?? '?'} ${event.payload.status}`
  sent[key] = (sent[key] ?? 0) + 1
})
agent.events.on(core.RoutingEventTypes.MediationStateChanged, (event) => {
  const record = event.payload.mediationRecord
  log(`mediation ${record.id} ${record.state} (connection ${record.connectionId})`)
})
agent.events.on(core.ConnectionEventTypes.ConnectionStateChanged, (event) => {
  const record = event.payload.connectionRecord
  log(`connection ${record.id} ${record.state} ${record.theirLabel ?? ''}`)
})
agent.events.on(core.MessagePickupEventTypes.LiveSessionSaved, (event) => {
  log(`live session saved: connection ${event.payload.session.connectionId} (${event.payload.session.protocolVersion})`)
})
agent.events.on(core.MessagePickupEventTypes.LiveSessionRemoved, (event) => {
  log(`live session removed: connection ${event.payload.session.connectionId}`)
})

let stopping = false
async function stop(reason) {
  if (stopping) return
  stopping = true
  log(`stopping (${reason})`)
  try {
    await withTimeout(agent.shutdown(), 10000, 'agent.shutdown()')
  } catch (error) {
    log(`shutdown failed: ${errorText(error)}`)
  }
}

process.on('unhandledRejection', (reason) => log(`unhandled rejection: ${errorText(reason)}`))
process.on('uncaughtException', (error) => log(`uncaught exception: ${errorText(error)}\n${error?.stack ?? ''}`))
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => stop(signal).finally(() => process.exit(0)))
}

try {
  await agent.initialize()
  // Multi-use: every recipient of a test connects with this one invitation. (The mediator has no
  // mediator of its own, so a connection from it needs no keylist update.)
  const record = await agent.oob.createInvitation({ multiUseInvitation: true, handshakeProtocols })
  const invitationUrl = record.outOfBandInvitation.toUrl({ domain: httpEndpoint })
  log(`ready in ${Date.now() - started} ms; forwarding ${args.forwarding}; handshake ${args.handshake}`)
  emit({ event: 'ready', invitationUrl, httpEndpoint, wsEndpoint, pid: process.pid })
} catch (error) {
  fail(`mediator failed to start: ${errorText(error)}`)
}

let stdinIsPipe = false
try {
  const stat = fstatSync(0)
  stdinIsPipe = stat.isFIFO() || stat.isSocket()
} catch {
  // no stdin at all
}
if (stdinIsPipe) {
  readLines(
    async (line) => {
      let cmd
      try {
        cmd = JSON.parse(line)
      } catch {
        emit({ id: null, ok: false, error: 'not JSON' })
        return
      }
      if (cmd.cmd === 'stats') {
        const mediations = await agent.dependencyManager
          .resolve(core.MediationRepository)
          .getAll(agent.context)
          .catch(() => [])
        emit({ id: cmd.id ?? null, ok: true, processed, sent, mediations: mediations.length, uptimeMs: Date.now() - started })
      } else if (cmd.cmd === 'shutdown') {
        await stop('shutdown command')
        emit({ id: cmd.id ?? null, ok: true })
        process.exit(0)
      } else {
        emit({ id: cmd.id ?? null, ok: false, error: `unknown cmd ${JSON.stringify(cmd.cmd)}` })
      }
    },
    () => stop('stdin closed').finally(() => process.exit(0)),
  )
}
