#!/usr/bin/env node
// By-hand check of the harness (the Rust tests drive agent.mjs the same way, see tests/src/credo.rs):
// a mediated recipient, an unmediated sender with an HTTP endpoint, N basic messages sender →
// recipient through the mediator. Starts the reference credo mediator unless --mediator-invitation
// is given (e.g. the Rust mediator's invitation URL).
//
//   node scenario.mjs [--strategy PickUpV2LiveMode] [--handshake didexchange] [--numalgo 1]
//                     [--messages 20] [--mediator-invitation URL] [--forwarding …] [--timeout-ms 60000]
//                     [--trace]
// Prints one JSON line with the result; exits 0 when all messages arrived.

import { spawn } from 'node:child_process'
import { createServer } from 'node:net'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

const here = dirname(fileURLToPath(import.meta.url))
const { values: args } = parseArgs({
  options: {
    strategy: { type: 'string', default: 'PickUpV2LiveMode' },
    handshake: { type: 'string', default: 'didexchange' },
    numalgo: { type: 'string', default: '1' },
    messages: { type: 'string', default: '20' },
    'mediator-invitation': { type: 'string' },
    forwarding: { type: 'string', default: 'QueueAndLiveModeDelivery' },
    'mediator-handshake': { type: 'string', default: 'both' },
    'timeout-ms': { type: 'string', default: '60000' },
    trace: { type: 'boolean', default: false },
  },
})
const count = Number(args.messages)
const timeoutMs = Number(args['timeout-ms'])
const children = []

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
    server.on('error', reject)
  })
}

/** A child process speaking JSON lines; stderr prefixed with `name`. */
function startProcess(name, argv) {
  const child = spawn(process.execPath, argv, { stdio: ['pipe', 'pipe', 'pipe'] })
  children.push(child)
  const waiting = new Map()
  const events = []
  const eventWaiters = []
  let buffer = ''
  child.stdout.setEncoding('utf8')
  child.stdout.on('data', (chunk) => {
    buffer += chunk
    let i
    while ((i = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, i)
      buffer = buffer.slice(i + 1)
      if (!line.trim()) continue
      const msg = JSON.parse(line)
      if (msg.id !== undefined && msg.id !== null && waiting.has(msg.id)) {
        waiting.get(msg.id)(msg)
        waiting.delete(msg.id)
      } else {
        events.push(msg)
        for (const w of [...eventWaiters]) w()
      }
    }
  })
  let errBuffer = ''
  child.stderr.setEncoding('utf8')
  child.stderr.on('data', (chunk) => {
    errBuffer += chunk
    let i
    while ((i = errBuffer.indexOf('\n')) >= 0) {
      process.stderr.write(`[${name}] ${errBuffer.slice(0, i)}\n`)
      errBuffer = errBuffer.slice(i + 1)
    }
  })
  let nextId = 1
  return {
    child,
    events,
    call(cmd, ms = timeoutMs) {
      const id = nextId++
      child.stdin.write(JSON.stringify({ ...cmd, id }) + '\n')
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${name}: ${cmd.cmd} timed out`)), ms)
        waiting.set(id, (msg) => {
          clearTimeout(timer)
          msg.ok === false ? reject(new Error(`${name}: ${msg.error}`)) : resolve(msg)
        })
      })
    },
    waitEvent(pred, ms = timeoutMs) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const idx = events.findIndex(pred)
          if (idx >= 0) {
            eventWaiters.splice(eventWaiters.indexOf(check), 1)
            clearTimeout(timer)
            resolve(events.splice(idx, 1)[0])
          }
        }
        const timer = setTimeout(() => {
          eventWaiters.splice(eventWaiters.indexOf(check), 1)
          reject(new Error(`${name}: event timed out`))
        }, ms)
        eventWaiters.push(check)
        check()
      })
    },
  }
}

const result = {
  strategy: args.strategy,
  handshake: args.handshake,
  numalgo: Number(args.numalgo),
  forwarding: args['mediator-invitation'] ? null : args.forwarding,
  sent: 0,
  received: 0,
}
const t0 = Date.now()
try {
  let mediatorInvitationUrl = args['mediator-invitation']
  if (!mediatorInvitationUrl) {
    const [httpPort, wsPort] = [await freePort(), await freePort()]
    const extra = args.trace ? ['--trace'] : []
    const mediator = startProcess('mediator', [
      join(here, 'reference-mediator.mjs'),
      '--http-port', String(httpPort), '--ws-port', String(wsPort),
      '--forwarding', args.forwarding, '--handshake', args['mediator-handshake'], ...extra,
    ])
    mediatorInvitationUrl = (await mediator.waitEvent((e) => e.event === 'ready')).invitationUrl
  }
  const recipient = startProcess('recipient', [join(here, 'agent.mjs')])
  const sender = startProcess('sender', [join(here, 'agent.mjs')])
  const init = await recipient.call({
    cmd: 'init',
    label: 'recipient',
    mediatorInvitationUrl,
    pickupStrategy: args.strategy,
    didPeerNumalgo: Number(args.numalgo),
    handshake: args.handshake,
    inboundPort: null,
    pollingIntervalMs: 500,
    trace: args.trace,
  })
  result.mediationGranted = init.mediationGranted
  result.pickupReady = init.pickupReady
  result.initMs = Date.now() - t0
  await sender.call({
    cmd: 'init',
    label: 'sender',
    mediatorInvitationUrl: null,
    pickupStrategy: 'None',
    didPeerNumalgo: Number(args.numalgo),
    handshake: args.handshake,
    inboundPort: await freePort(),
    trace: args.trace,
  })
  const { invitationUrl } = await recipient.call({ cmd: 'createInvitation' })
  const t1 = Date.now()
  const { connectionId } = await sender.call({ cmd: 'receiveInvitation', url: invitationUrl })
  result.connectMs = Date.now() - t1
  const t2 = Date.now()
  for (let i = 1; i <= count; i++) {
    await sender.call({ cmd: 'sendMessage', connectionId, content: `message ${i}/${count}` })
    result.sent += 1
  }
  result.sendMs = Date.now() - t2
  const contents = new Set()
  while (contents.size < count) {
    const e = await recipient.waitEvent((e) => e.event === 'basicMessage')
    contents.add(e.content)
    result.received = contents.size
  }
  result.deliverMs = Date.now() - t2
  result.ok = true
  await Promise.all([recipient.call({ cmd: 'shutdown' }), sender.call({ cmd: 'shutdown' })])
} catch (error) {
  result.ok = false
  result.error = error.message
}
result.totalMs = Date.now() - t0
console.log(JSON.stringify(result))
for (const child of children) child.kill('SIGKILL')
process.exit(result.ok ? 0 : 1)
