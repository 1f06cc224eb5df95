// The JSON-lines agent shared by the credo-ts harnesses: ./agent.mjs (0.5.19) and
// ../credo-0.6/agent.mjs (0.6.3) each call runAgent(flavor) with what differs between the versions
// (packages, module and event names, how an agent is built, where the DIDComm APIs are), so both
// speak exactly this protocol and tests/src/credo.rs drives either. Commands on stdin, answers and
// events on stdout (one JSON object per line), logs on stderr.
//
// Commands (every answer echoes the command's "id"; errors are {"id", "ok": false, "error"}):
//   {"id":1,"cmd":"init","label":"alice","mediatorInvitationUrl":"…"|null,
//    "pickupStrategy":"PickUpV1"|"PickUpV2"|"PickUpV2LiveMode"|"Implicit"|"None",
//    "didPeerNumalgo":1|2|4 (default: 1 in 0.5.19, 4 in 0.6.3),"handshake":"didexchange"|"connections"|"any","inboundPort":N|null,
//    "pollingIntervalMs":N, optional: "inboundHost", "pickupReadyTimeoutMs", "initTimeoutMs",
//    "logLevel", "trace", "processMessagesConcurrently"}
//       → {"ok":true,"mediationGranted":bool,"pickupReady":bool or null (no mediator),"mediator":{…}|null,"endpoints":[…]}
//   {"cmd":"createInvitation"}            → {"invitationUrl","outOfBandId"}  (single use)
//   {"cmd":"receiveInvitation","url"}     → {"connectionId"} once the connection is completed
//   {"cmd":"waitForConnection","outOfBandId"} → {"connectionId"} once the invitation was used
//   {"cmd":"sendMessage","connectionId","content"} → {"ok":true}
//   {"cmd":"pickup","protocolVersion":"v1"|"v2","awaitCompletion":bool} → {"ok":true}
//   {"cmd":"stopPickup"} / {"cmd":"startPickup"} → {"ok":true}
//   {"cmd":"status"}                      → {"connections":[…],"mediator":…,"basicMessagesReceived":N}
//   {"cmd":"shutdown"}                    → {"ok":true}, then the process exits 0
// Events (no id): basicMessage, connectionState, mediationState, keylistUpdated, liveSession,
// pickupCompleted, error.
// Closing stdin shuts the agent down too.

import { randomUUID } from 'node:crypto'
import { emit, errorText, log, readLines, setLogPrefix, withTimeout } from './common.mjs'

// Which handshake_protocols entries of an invitation belong to each handshake (any 1.x version,
// https://didcomm.org/ or did:sov:…;spec/ prefix).
const HANDSHAKE_PATTERNS = {
  didexchange: /[/;]didexchange\/1\.\d+$/,
  connections: /[/;]connections\/1\.\d+$/,
}

// What differs between the credo versions (see runAgent), and the loaded packages.
let flavor
let credo
// flavor.names(credo): event names, enums and helpers under one set of names
let names
let agent = null
// the DIDComm APIs: the agent itself in 0.5 (agent.oob, …), agent.didcomm in 0.6
let didcomm = null
let initializing = false
let initialized = false
let shuttingDown = false
let settings = {}
let basicMessagesReceived = 0
// ids of the live-delivery-change messages we sent: a status threaded to one means live mode is on
const liveDeliveryChangeIds = new Set()
let liveModeActive = false
let mediatorConnectionId = null
// open outbound WebSockets by connection id (the mediator's may open before init knows its id)
const openSockets = new Map()
const mediatorSocketOpen = () => Boolean(mediatorConnectionId && openSockets.get(mediatorConnectionId)?.size)
const readinessWaiters = new Set()

function notifyReadiness() {
  for (const waiter of readinessWaiters) waiter()
}

function mediationJson(record) {
  if (!record) return null
  return {
    mediationId: record.id,
    connectionId: record.connectionId,
    state: record.state,
    role: record.role,
    endpoint: record.endpoint ?? null,
    routingKeys: record.routingKeys ?? [],
    isDefault: record.getTags?.().default ?? null,
    pickupStrategy: record.pickupStrategy ?? null,
  }
}

function connectionJson(record) {
  return {
    connectionId: record.id,
    state: record.state,
    role: record.role,
    protocol: record.protocol ?? null,
    theirLabel: record.theirLabel ?? null,
    outOfBandId: record.outOfBandId ?? null,
    did: record.did ?? null,
    theirDid: record.theirDid ?? null,
  }
}

/** The invitation URL with only the chosen handshake protocol left in it (or unchanged). */
function restrictHandshake(url, handshake) {
  if (!handshake || handshake === 'any') return url
  const wanted = HANDSHAKE_PATTERNS[handshake]
  if (!wanted) throw new Error(`unknown handshake "${handshake}" (didexchange, connections or any)`)
  let invitation
  try {
    invitation = names.parseInvitationUrl(url)
  } catch (error) {
    log(`cannot parse invitation locally (${errorText(error)}); using it unchanged`)
    return url
  }
  const offered = invitation.handshakeProtocols ?? []
  const kept = offered.filter((p) => wanted.test(p))
  if (kept.length === 0) {
    throw new Error(`the invitation offers handshake protocols ${JSON.stringify(offered)}, not ${handshake}`)
  }
  if (kept.length === offered.length) return url
  invitation.handshakeProtocols = kept
  const domain = url.split('?')[0] || 'https://example.invalid'
  return invitation.toUrl({ domain })
}

function subscribeEvents() {
  agent.events.on(names.BasicMessageStateChanged, (event) => {
    const { basicMessageRecord: record, message } = event.payload
    if (record.role !== names.BasicMessageReceiver) return
    basicMessagesReceived += 1
    emit({
      event: 'basicMessage',
      connectionId: record.connectionId,
      content: record.content,
      messageId: message.id,
      sentTime: record.sentTime,
    })
  })
  agent.events.on(names.ConnectionStateChanged, (event) => {
    const { connectionRecord, previousState } = event.payload
    log(`connection ${connectionRecord.id} ${connectionRecord.state} ${connectionRecord.theirLabel ?? ''} (${connectionRecord.protocol ?? '?'})`)
    emit({ event: 'connectionState', ...connectionJson(connectionRecord), previousState: previousState ?? null })
  })
  agent.events.on(names.MediationStateChanged, (event) => {
    const { mediationRecord, previousState } = event.payload
    emit({ event: 'mediationState', ...mediationJson(mediationRecord), previousState: previousState ?? null })
  })
  agent.events.on(names.RecipientKeylistUpdated, (event) => {
    emit({
      event: 'keylistUpdated',
      mediationId: event.payload.mediationRecord.id,
      keylist: event.payload.keylist.map((k) => ({ recipientKey: k.recipientKey, action: k.action })),
    })
  })
  agent.events.on(names.MessagePickupCompleted, (event) => {
    emit({ event: 'pickupCompleted', connectionId: event.payload.connection.id, threadId: event.payload.threadId ?? null })
  })
  agent.events.on(names.OutboundWebSocketOpened, (event) => {
    const { connectionId, socketId } = event.payload
    if (connectionId) {
      if (!openSockets.has(connectionId)) openSockets.set(connectionId, new Set())
      openSockets.get(connectionId).add(socketId)
      notifyReadiness()
    }
    emit({ event: 'liveSession', state: 'socketOpened', connectionId: connectionId ?? null, socketId })
  })
  agent.events.on(names.OutboundWebSocketClosed, (event) => {
    const { connectionId, socketId } = event.payload
    if (connectionId) openSockets.get(connectionId)?.delete(socketId)
    if (connectionId && connectionId === mediatorConnectionId && !mediatorSocketOpen()) liveModeActive = false
    emit({ event: 'liveSession', state: 'socketClosed', connectionId: connectionId ?? null, socketId })
  })
  agent.events.on(names.MessageSent, (event) => {
    const message = event.payload.message.message
    if (message?.type === 'https://didcomm.org/messagepickup/2.0/live-delivery-change') {
      liveDeliveryChangeIds.add(message.id)
      emit({
        event: 'liveSession',
        state: message.liveDelivery ? 'requested' : 'stopRequested',
        sendStatus: event.payload.status,
        messageId: message.id,
      })
    }
  })
  agent.events.on(names.MessageProcessed, (event) => {
    const message = event.payload.message
    if (message?.type === 'https://didcomm.org/messagepickup/2.0/status' && liveDeliveryChangeIds.has(message.threadId)) {
      liveModeActive = message.liveDelivery !== false
      emit({
        event: 'liveSession',
        state: liveModeActive ? 'live' : 'notLive',
        liveDelivery: message.liveDelivery ?? null,
        messageCount: message.messageCount,
      })
      notifyReadiness()
    }
  })
}

/** Waits (up to timeoutMs) until the configured pickup strategy is running; true when it is. */
async function waitPickupReady(strategy, timeoutMs) {
  const ready = () => {
    if (strategy === 'PickUpV2LiveMode') return liveModeActive
    if (strategy === 'Implicit') return mediatorSocketOpen()
    return true
  }
  if (ready()) return true
  return new Promise((resolve) => {
    const done = (value) => {
      clearTimeout(timer)
      readinessWaiters.delete(check)
      resolve(value)
    }
    const check = () => ready() && done(true)
    const timer = setTimeout(() => done(false), timeoutMs)
    readinessWaiters.add(check)
  })
}

async function cmdInit(cmd) {
  if (agent || initializing) throw new Error('init was already called')
  initializing = true
  const {
    label = `credo-${randomUUID().slice(0, 8)}`,
    mediatorInvitationUrl = null,
    pickupStrategy = 'PickUpV2LiveMode',
    didPeerNumalgo = flavor.defaultNumalgo,
    handshake = 'didexchange',
    inboundPort = null,
    inboundHost = '127.0.0.1',
    pollingIntervalMs = 1000,
    pickupReadyTimeoutMs = 15000,
    initTimeoutMs = 90000,
    trace = false,
    processMessagesConcurrently = false,
  } = cmd
  setLogPrefix(`[${label}] `)
  if (!Object.values(names.MediatorPickupStrategy).includes(pickupStrategy)) {
    throw new Error(`unknown pickupStrategy "${pickupStrategy}"`)
  }
  const numAlgo = {
    1: names.PeerDidNumAlgo.GenesisDoc,
    2: names.PeerDidNumAlgo.MultipleInceptionKeyWithoutDoc,
    4: names.PeerDidNumAlgo.ShortFormAndLongForm,
  }[didPeerNumalgo]
  if (numAlgo === undefined) throw new Error(`didPeerNumalgo must be 1, 2 or 4, not ${didPeerNumalgo}`)
  if (!(handshake in HANDSHAKE_PATTERNS) && handshake !== 'any') throw new Error(`unknown handshake "${handshake}"`)
  settings = { label, handshake, pickupStrategy, numAlgo: didPeerNumalgo }

  const mediatorUrl = mediatorInvitationUrl ? restrictHandshake(mediatorInvitationUrl, handshake) : undefined
  const endpoints = inboundPort ? [`http://${inboundHost}:${inboundPort}`] : undefined
  agent = flavor.createAgent(credo, {
    label,
    storeId: `${label}-${randomUUID()}`,
    endpoints,
    inboundPort,
    logLevel: cmd.logLevel ?? process.env.CREDO_LOG_LEVEL,
    processMessagesConcurrently,
    numAlgo,
    mediatorUrl,
    pickupStrategy,
    pollingIntervalMs,
  })
  didcomm = flavor.didcommApi(agent)
  if (trace || process.env.CREDO_TRACE === '1') flavor.traceMessages(agent, credo)
  subscribeEvents()

  const started = Date.now()
  // With a mediator invitation, initialize() connects, requests mediation, waits for the grant and
  // sets the mediator as default (credo's own provisioning path); pickup starts right after.
  await withTimeout(
    agent.initialize(),
    initTimeoutMs,
    mediatorUrl ? 'agent initialisation (connect to the mediator, mediation request and grant)' : 'agent initialisation',
  )
  const mediator = await didcomm.mediationRecipient.findDefaultMediator()
  mediatorConnectionId = mediator?.connectionId ?? null
  if (mediatorUrl && !mediator?.isReady) {
    throw new Error(`initialised, but no granted default mediator (record: ${JSON.stringify(mediationJson(mediator))})`)
  }
  let pickupReady = null
  if (mediator) {
    pickupReady = await waitPickupReady(pickupStrategy, pickupReadyTimeoutMs)
    if (!pickupReady) log(`pickup strategy ${pickupStrategy} not ready after ${pickupReadyTimeoutMs} ms`)
  }
  initializing = false
  initialized = true
  log(`initialised in ${Date.now() - started} ms; mediator ${JSON.stringify(mediationJson(mediator))}; pickupReady ${pickupReady}`)
  return {
    ok: true,
    label,
    mediationGranted: Boolean(mediator?.isReady),
    pickupReady,
    mediator: mediationJson(mediator),
    endpoints: didcomm.config.endpoints,
    initMs: Date.now() - started,
  }
}

function requireAgent() {
  if (!agent || !initialized) throw new Error('the agent is not initialised: send init first (a failed init cannot be retried: start a new agent)')
  return agent
}

async function cmdCreateInvitation(cmd) {
  requireAgent()
  const handshake = cmd.handshake ?? settings.handshake
  const handshakeProtocols =
    handshake === 'connections'
      ? [names.HandshakeProtocol.Connections]
      : handshake === 'didexchange'
        ? [names.HandshakeProtocol.DidExchange]
        : undefined
  // Single use: with a multi-use invitation credo makes new routing for each request while it is
  // processing that request, and its keylist-update then waits for a response that its one-at-a-time
  // message processing cannot handle until it times out (15 s).
  // When mediated, this sends keylist-update and waits for keylist-update-response (up to 15 s).
  // The label: credo 0.5 takes the agent's when none is given, 0.6 has no agent label.
  const record = await didcomm.oob.createInvitation({
    multiUseInvitation: false,
    autoAcceptConnection: true,
    handshakeProtocols,
    label: cmd.label ?? settings.label,
  })
  const domain = cmd.domain ?? didcomm.config.endpoints[0]?.replace(/^didcomm:.*/, '') ?? ''
  const invitationUrl = record.outOfBandInvitation.toUrl({ domain: domain || 'https://example.invalid' })
  return { invitationUrl, outOfBandId: record.id, invitation: record.outOfBandInvitation.toJSON() }
}

async function cmdReceiveInvitation(cmd) {
  requireAgent()
  if (!cmd.url) throw new Error('receiveInvitation needs "url"')
  const timeoutMs = cmd.timeoutMs ?? 30000
  const url = restrictHandshake(cmd.url, cmd.handshake ?? settings.handshake)
  const { connectionRecord, outOfBandRecord } = await didcomm.oob.receiveInvitationFromUrl(url, {
    label: cmd.label ?? settings.label,
    autoAcceptInvitation: true,
    autoAcceptConnection: true,
    reuseConnection: false,
  })
  if (!connectionRecord) throw new Error(`no connection made from the invitation (out-of-band record ${outOfBandRecord.id})`)
  const connection = await didcomm.connections.returnWhenIsConnected(connectionRecord.id, { timeoutMs })
  return { connectionId: connection.id, outOfBandId: outOfBandRecord.id, protocol: connection.protocol ?? null, theirLabel: connection.theirLabel ?? null }
}

async function cmdWaitForConnection(cmd) {
  requireAgent()
  if (!cmd.outOfBandId) throw new Error('waitForConnection needs "outOfBandId"')
  const timeoutMs = cmd.timeoutMs ?? 30000
  const find = async () =>
    (await didcomm.connections.findAllByOutOfBandId(cmd.outOfBandId)).find((c) => c.isReady)
  const found = await find()
  if (found) return { connectionId: found.id }
  const connection = await withTimeout(
    new Promise((resolve) => {
      const listener = (event) => {
        const record = event.payload.connectionRecord
        if (record.outOfBandId === cmd.outOfBandId && record.isReady) {
          agent.events.off(names.ConnectionStateChanged, listener)
          resolve(record)
        }
      }
      agent.events.on(names.ConnectionStateChanged, listener)
      // in case it completed between find() and subscribing
      find().then((record) => record && resolve(record))
    }),
    timeoutMs,
    `a completed connection from out-of-band invitation ${cmd.outOfBandId}`,
  )
  return { connectionId: connection.id }
}

async function cmdSendMessage(cmd) {
  requireAgent()
  if (!cmd.connectionId || typeof cmd.content !== 'string') throw new Error('sendMessage needs "connectionId" and "content"')
  const record = await didcomm.basicMessages.sendMessage(cmd.connectionId, cmd.content)
  return { ok: true, basicMessageId: record.id }
}

async function cmdPickup(cmd) {
  requireAgent()
  const mediator = await didcomm.mediationRecipient.findDefaultMediator()
  if (!mediator) throw new Error('no default mediator to pick up from')
  await didcomm.messagePickup.pickupMessages({
    connectionId: mediator.connectionId,
    protocolVersion: cmd.protocolVersion ?? 'v2',
    batchSize: cmd.batchSize,
    awaitCompletion: cmd.awaitCompletion ?? false,
    awaitCompletionTimeoutMs: cmd.timeoutMs,
  })
  return { ok: true }
}

async function cmdStatus() {
  requireAgent()
  const connections = await didcomm.connections.getAll()
  const mediator = await didcomm.mediationRecipient.findDefaultMediator()
  return {
    label: settings.label,
    connections: connections.map(connectionJson),
    mediator: mediationJson(mediator),
    liveModeActive,
    mediatorSocketOpen: mediatorSocketOpen(),
    basicMessagesReceived,
  }
}

async function shutdown(reason) {
  if (shuttingDown) return
  shuttingDown = true
  log(`shutting down (${reason})`)
  if (agent) {
    try {
      await didcomm.mediationRecipient.stopMessagePickup()
    } catch (error) {
      log(`stopMessagePickup failed: ${errorText(error)}`)
    }
    try {
      await withTimeout(agent.shutdown(), 10000, 'agent.shutdown()')
    } catch (error) {
      log(`shutdown failed: ${errorText(error)}`)
    }
  }
}

async function handle(line) {
  let cmd
  try {
    cmd = JSON.parse(line)
  } catch (error) {
    emit({ id: null, ok: false, error: `not JSON: ${errorText(error)}: ${line.slice(0, 200)}` })
    return
  }
  const id = cmd.id ?? null
  try {
    let answer
    switch (cmd.cmd) {
      case 'init':
        answer = await cmdInit(cmd)
        break
      case 'createInvitation':
        answer = await cmdCreateInvitation(cmd)
        break
      case 'receiveInvitation':
        answer = await cmdReceiveInvitation(cmd)
        break
      case 'waitForConnection':
        answer = await cmdWaitForConnection(cmd)
        break
      case 'sendMessage':
        answer = await cmdSendMessage(cmd)
        break
      case 'pickup':
        answer = await cmdPickup(cmd)
        break
      case 'stopPickup':
        requireAgent()
        await didcomm.mediationRecipient.stopMessagePickup()
        answer = { ok: true }
        break
      case 'startPickup':
        requireAgent()
        await didcomm.mediationRecipient.initiateMessagePickup()
        answer = { ok: true }
        break
      case 'status':
        answer = await cmdStatus()
        break
      case 'shutdown':
        await shutdown('shutdown command')
        emit({ id, ok: true })
        process.exit(0)
        return
      default:
        throw new Error(`unknown cmd ${JSON.stringify(cmd.cmd)}`)
    }
    emit({ ok: true, ...answer, id })
  } catch (error) {
    if (cmd.cmd === 'init') initializing = false
    log(`command ${cmd.cmd} (id ${id}) failed: ${errorText(error)}`)
    if (error?.stack) log(error.stack)
    emit({ id, ok: false, error: `${cmd.cmd}: ${errorText(error)}` })
  }
}

/**
 * Runs the agent: loads credo (`flavor.load()`), says `ready`, then answers commands until stdin
 * closes. `flavor` is what differs between the credo versions:
 * - `version`: the credo-ts version (in the `ready` event); `defaultNumalgo`: did:peer numalgo of
 *   DID Exchange requests when `init` names none;
 * - `load()`: the packages (may be async); `names(credo)`: event names, enums and helpers under
 *   one set of names (BasicMessageStateChanged, BasicMessageReceiver, ConnectionStateChanged,
 *   MediationStateChanged, RecipientKeylistUpdated, MessagePickupCompleted,
 *   OutboundWebSocketOpened, OutboundWebSocketClosed, MessageSent, MessageProcessed,
 *   MediatorPickupStrategy, HandshakeProtocol, PeerDidNumAlgo, parseInvitationUrl);
 * - `createAgent(credo, options)`: a new agent (not initialised) with an in-memory store, its
 *   transports and the mediation recipient configured; `didcommApi(agent)`: where `oob`,
 *   `connections`, `mediationRecipient`, `messagePickup`, `basicMessages` and `config.endpoints`
 *   are; `traceMessages(agent, credo)`: plaintext traces on stderr.
 */
export async function runAgent(agentFlavor) {
  flavor = agentFlavor
  process.on('unhandledRejection', (reason) => {
    log(`unhandled rejection: ${errorText(reason)}`)
    emit({ event: 'error', error: `unhandled rejection: ${errorText(reason)}` })
  })
  process.on('uncaughtException', (error) => {
    log(`uncaught exception: ${errorText(error)}\n${error?.stack ?? ''}`)
    emit({ event: 'error', error: `uncaught exception: ${errorText(error)}` })
  })
  for (const signal of ['SIGTERM', 'SIGINT']) {
    process.on(signal, () => shutdown(signal).finally(() => process.exit(0)))
  }

  try {
    credo = await flavor.load()
    names = flavor.names(credo)
  } catch (error) {
    log(errorText(error))
    emit({ event: 'error', error: errorText(error) })
    process.exit(2)
  }
  emit({ event: 'ready', pid: process.pid, node: process.version, credo: flavor.version })
  readLines(
    (line) => {
      handle(line)
    },
    () => shutdown('stdin closed').finally(() => process.exit(0)),
  )
}
