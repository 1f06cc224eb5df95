// Shared plumbing of agent.mjs and reference-mediator.mjs (and, for its version-independent part,
// of ../credo-0.6/agent.mjs).
//
// Protocol on stdout: one JSON object per line, nothing else. Everything credo (or anything else)
// prints through `console` goes to stderr: importing this module rebinds console.log/info/debug/warn
// before credo is loaded.

import { createRequire } from 'node:module'
import { format } from 'node:util'

const stdoutWrite = process.stdout.write.bind(process.stdout)
// credo 0.5 warns about four experimental default modules (DifPresentationExchange, SdJwtVc, X509,
// Mdoc) each time an agent is made: noise here.
const EXPERIMENTAL_WARNING = /^WARN: The '\w+' module is experimental/
for (const name of ['log', 'info', 'debug', 'warn', 'trace']) {
  console[name] = (...args) => {
    const text = format(...args)
    if (!EXPERIMENTAL_WARNING.test(text)) process.stderr.write(text + '\n')
  }
}
// Anything that bypasses console and writes to process.stdout directly would corrupt the protocol.
process.stdout.write = (chunk, ...rest) => process.stderr.write(chunk, ...rest)

const require = createRequire(import.meta.url)

/** Writes one protocol line (a JSON object) to stdout. */
export function emit(obj) {
  stdoutWrite(JSON.stringify(obj) + '\n')
}

let logPrefix = ''
export function setLogPrefix(prefix) {
  logPrefix = prefix
}

/** A log line on stderr. */
export function log(...args) {
  process.stderr.write(`${new Date().toISOString()} ${logPrefix}${format(...args)}\n`)
}

// What credo was waiting for when one of its rxjs timeouts fired (TimeoutError.info.meta).
const TIMEOUT_HINTS = {
  'MediationRecipientService.keylistUpdateAndAwait': 'no keylist-update-response from the mediator within 15 s',
  'MediationRecipientApi.requestAndAwaitGrant': 'no mediate-grant from the mediator',
  'ConnectionService.returnWhenIsConnected': 'the connection did not complete',
  'MessagePickupApi.pickupMessages': 'no pickup status with message_count 0 within the pickup timeout',
  'DiscoverFeaturesApi.queryFeatures': 'no discover-features disclose',
  'OutOfBandApi.handleHandshakeReuse': 'no handshake-reuse-accepted',
  // credo-ts 0.6 names (tests/interop/credo-0.6 imports this module)
  'DidCommMediationRecipientService.keylistUpdateAndAwait': 'no keylist-update-response from the mediator within 15 s',
  'DidCommConnectionService.returnWhenIsConnected': 'the connection did not complete',
  'DidCommMessagePickupApi.pickupMessages': 'no pickup status with message_count 0 within the pickup timeout',
}

export function errorText(error) {
  if (error instanceof Error) {
    const meta = error.info?.meta
    const waiting = typeof meta === 'string' ? ` (credo waited in ${meta}: ${TIMEOUT_HINTS[meta] ?? 'timeout'})` : ''
    const cause = error.cause ? ` (cause: ${errorText(error.cause)})` : ''
    return `${error.name}: ${error.message}${waiting}${cause}`
  }
  return String(error)
}

/** Loads credo and askar. Throws an actionable error when the install is incomplete. */
export function loadCredo() {
  try {
    const core = require('@credo-ts/core')
    const node = require('@credo-ts/node')
    const askar = require('@credo-ts/askar')
    const askarNodejs = require('@hyperledger/aries-askar-nodejs')
    // Loads the native library now (it is loaded lazily otherwise), so a missing .so fails here.
    askarNodejs.ariesAskar.version()
    return { core, node, askar, ariesAskar: askarNodejs.ariesAskar }
  } catch (error) {
    throw new Error(
      `cannot load credo-ts / aries-askar (${errorText(error)}); run scripts/setup-interop-credo`,
    )
  }
}

/** The credo log level by name ("test", "trace", "debug", "info", "warn", "error", "fatal", "off"). */
export function logLevel(core, name) {
  const level = core.LogLevel[(name ?? 'warn').toLowerCase()]
  return level === undefined ? core.LogLevel.warn : level
}

/** An in-memory askar wallet with a random raw key (no key derivation: fast). */
export function inMemoryWalletConfig(core, ariesAskar, id) {
  return {
    id,
    key: ariesAskar.storeGenerateRawKey({}),
    keyDerivationMethod: core.KeyDerivationMethod.Raw,
    storage: { type: 'sqlite', config: { inMemory: true } },
  }
}

function messageJson(message) {
  try {
    return typeof message?.toJSON === 'function' ? message.toJSON() : message
  } catch {
    return message
  }
}

/**
 * Plaintext traces of every DIDComm message on stderr ("IN {...}", "OUT <status> {...}"), in the
 * format of shared/interop/credo-0.5.19-traces.
 */
export function traceMessages(agent, core) {
  agent.events.on(core.AgentEventTypes.AgentMessageProcessed, (event) => {
    log(`IN  ${JSON.stringify(messageJson(event.payload.message))}`)
  })
  agent.events.on(core.AgentEventTypes.AgentMessageSent, (event) => {
    log(`OUT ${event.payload.status} ${JSON.stringify(messageJson(event.payload.message.message))}`)
  })
}

/** Resolves with `promise`, or rejects after `ms` with `what` in the message. */
export function withTimeout(promise, ms, what) {
  let timer
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms)
    }),
  ]).finally(() => clearTimeout(timer))
}

/** Calls `handler(line)` for each line of stdin; `onEnd()` when stdin closes. */
export function readLines(handler, onEnd) {
  let buffer = ''
  process.stdin.setEncoding('utf8')
  process.stdin.on('data', (chunk) => {
    buffer += chunk
    let newline
    while ((newline = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, newline).trim()
      buffer = buffer.slice(newline + 1)
      if (line) handler(line)
    }
  })
  process.stdin.on('end', () => {
    if (buffer.trim()) handler(buffer.trim())
    onEnd()
  })
}
