// Plumbing of the credo-ts 0.6 agent. The version-independent part (stdout is protocol only,
// console goes to stderr, logs, timeouts, stdin lines) is the 0.5 harness's `../credo/common.mjs`,
// imported first so that console is rebound before credo is loaded; what differs in 0.6 (packages,
// askar store configuration, event names) is here.

import {
  emit,
  errorText,
  log,
  readLines,
  setLogPrefix,
  withTimeout,
} from '../credo/common.mjs'

export { emit, errorText, log, readLines, setLogPrefix, withTimeout }

/**
 * Loads credo-ts 0.6 (`@credo-ts/core`, `@credo-ts/didcomm`, `@credo-ts/node`, `@credo-ts/askar`)
 * and askar (`@openwallet-foundation/askar-nodejs`, whose native library is
 * node_modules/@openwallet-foundation/askar-nodejs/native/libaries_askar.so or `$LIB_ASKAR_PATH`).
 * Throws an actionable error when the install is incomplete.
 */
export async function loadCredo() {
  try {
    // askar-nodejs first: it registers the native binding in @openwallet-foundation/askar-shared
    // (CommonJS), whose `askar` export @credo-ts/askar (ES module) reads when it is first imported;
    // imported the other way round, credo sees `askar` undefined ("reading 'keyGetJwkSecret'").
    const askarNodejs = await import('@openwallet-foundation/askar-nodejs')
    const core = await import('@credo-ts/core')
    const didcomm = await import('@credo-ts/didcomm')
    const node = await import('@credo-ts/node')
    const askar = await import('@credo-ts/askar')
    // Loads the native library now (it is loaded lazily otherwise), so a missing .so fails here.
    const version = askarNodejs.askar.version()
    return { core, didcomm, node, askar, askarLib: askarNodejs.askar, askarVersion: version }
  } catch (error) {
    throw new Error(
      `cannot load credo-ts 0.6 / askar (${errorText(error)}); run scripts/setup-interop-credo-0.6`,
    )
  }
}

/** The credo log level by name ("test", "trace", "debug", "info", "warn", "error", "fatal", "off"). */
export function logLevel(core, name) {
  const level = core.LogLevel[(name ?? 'warn').toLowerCase()]
  return level === undefined ? core.LogLevel.warn : level
}

/** An in-memory askar store with a random raw key (no key derivation: fast). */
export function inMemoryStore(askarLib, id) {
  return {
    id,
    key: askarLib.storeGenerateRawKey({}),
    keyDerivationMethod: 'raw',
    database: { type: 'sqlite', config: { inMemory: true } },
  }
}

function messageJson(message) {
  try {
    return typeof message?.toJSON === 'function' ? message.toJSON() : message
  } catch {
    return message
  }
}

/** Plaintext traces of every DIDComm message on stderr ("IN {...}", "OUT <status> {...}"). */
export function traceMessages(agent, didcomm) {
  agent.events.on(didcomm.DidCommEventTypes.DidCommMessageProcessed, (event) => {
    log(`IN  ${JSON.stringify(messageJson(event.payload.message))}`)
  })
  agent.events.on(didcomm.DidCommEventTypes.DidCommMessageSent, (event) => {
    log(`OUT ${event.payload.status} ${JSON.stringify(messageJson(event.payload.message.message))}`)
  })
}
