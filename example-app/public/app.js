/* global EventSource, location, requestAnimationFrame, PerformanceObserver */
// The demo page: plain browser JavaScript, no build step. Every request goes to the ingress
// that served this page.
const $ = (id) => document.getElementById(id)
const MB = 1024 * 1024
const PROTOCOL_NAMES = { h2: 'HTTP/2', 'http/1.1': 'HTTP/1.1', h3: 'HTTP/3' }
const settings = await (await fetch('/api/settings')).json()
const { timeout, streamIdleTimeout, maxStreamDuration, statusCode } = settings.deadline

showSettings()
showProtocol('page', performance.getEntriesByType('navigation')[0]?.nextHopProtocol, 'from the navigation timing entry')
watchTicker()
watchClock()
openChat()
setUpDownload()
setUpSlowCall()
setUpAuth()
watchMetrics()
watchReplicas()

function showSettings () {
  $('settings-line').textContent = `Deadline in force: timeout ${ms(timeout)} · streamIdleTimeout ${ms(streamIdleTimeout)} · ` +
    `maxStreamDuration ${maxStreamDuration ? ms(maxStreamDuration) : 'off'} · ${statusCode} on expiry before headers`
  $('settings-line').dataset.state = 'loaded'
  $('clock-delay').textContent = ms(settings.demo.clockDelayMs)
  $('slow-ms').textContent = ms(settings.demo.slowMs)
  $('download-size').textContent = `${settings.demo.downloadMb} MB`
  $('download-pace').textContent = downloadPace(settings.demo)
}

function watchTicker () {
  const opened = performance.now()
  const source = new EventSource('/live/ticker')
  let count = 0
  let late = 0
  const counts = streamCounts()
  source.onopen = () => {
    counts.opened()
    setState('sse-state', 'open', 'streaming')
  }
  source.onerror = () => {
    counts.failed()
    setState('sse-state', 'reconnecting', 'reconnecting…')
  }
  source.addEventListener('tick', (event) => {
    const since = performance.now() - opened
    const tick = JSON.parse(event.data)
    counts.received(Number(event.lastEventId))
    if (count === 0) showProtocol('sse', viaProtocol(tick.via), VIA_HOW)
    const afterTimeout = since > timeout
    count += 1
    if (afterTimeout) late += 1
    $('sse-count').textContent = count
    $('sse-late-count').textContent = late
    const row = document.createElement('tr')
    row.dataset.afterTimeout = String(afterTimeout)
    row.append(cell(`#${event.lastEventId}`), cell(clockTime(new Date())), cell(`+${seconds(since)}`),
      cell(`${tick.symbol} ${tick.price.toFixed(2)}`), cell(afterTimeout ? 'after the timeout' : '', 'tag'))
    const body = $('sse-events')
    body.prepend(row)
    while (body.rows.length > 8) body.deleteRow(-1)
  })
}

// What a restarted replica costs the stream: the EventSource's reconnects (an error after the
// first open: the browser reconnects, with Last-Event-ID, after the stream's retry delay), and
// the ids that did not follow the previous one (skipped ids are missing, older or equal ones
// repeated). With the proxy's sseResume all three stay 0 through a rolling restart.
function streamCounts () {
  let everOpened = false
  let reconnects = 0
  let missing = 0
  let repeated = 0
  let last = null
  const show = (id, value) => {
    $(id).textContent = value
    $(id).dataset.state = value === 0 ? 'ok' : 'bad'
  }
  $('sse-resume').textContent = settings.demo.sseResume ? 'on' : 'off'
  setUpRollingRestart()
  return {
    opened: () => { everOpened = true },
    failed: () => { if (everOpened) show('sse-reconnects', ++reconnects) },
    received: (id) => {
      if (last !== null && id > last + 1) show('sse-missing', missing += id - last - 1)
      if (last !== null && id <= last) show('sse-repeated', ++repeated)
      last = last === null ? id : Math.max(last, id)
    }
  }
}

function setUpRollingRestart () {
  const button = $('rolling-restart')
  button.hidden = !settings.demo.replicaControls
  button.addEventListener('click', async () => {
    button.disabled = true
    setState('rolling-state', 'running', 'restarting the replicas one by one…')
    try {
      const response = await fetch('/demo/replicas/rolling-restart', { method: 'POST' })
      if (!response.ok) throw new Error((await response.json()).message)
      const running = (await response.json()).filter(replica => replica.running).map(replica => replica.name)
      setState('rolling-state', 'done', `done: ${running.join(', ')} restarted and answering`)
    } catch (err) {
      setState('rolling-state', 'error', `failed: ${err.message}`)
    } finally {
      button.disabled = false
    }
  })
}

function watchClock () {
  const opened = performance.now()
  const source = new EventSource('/events/clock')
  let count = 0
  source.onerror = () => setState('clock-state', 'reconnecting', 'reconnecting…')
  source.addEventListener('clock', (event) => {
    const since = performance.now() - opened
    count += 1
    if (count === 1) {
      $('clock-first').textContent = seconds(since)
      showProtocol('clock', VERSIONS[JSON.parse(event.data).httpVersion], 'the httpVersion the ingress reports in the event')
    }
    setState('clock-state', 'open', 'streaming')
    $('clock-count').textContent = count
    logLine('clock-log', `#${event.lastEventId}  +${seconds(since)}  server time ${JSON.parse(event.data).serverTime}`, 'chat')
  })
}

function openChat () {
  const offered = ['echo.v1', 'chat.v2']
  // welcome=1: the service greets the socket as soon as it joins, with the Via it received.
  const socket = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/live/chat?welcome=1`, offered)
  const sentAt = new Map()
  socket.onopen = () => {
    setState('ws-state', 'open', 'open')
    $('ws-protocol').textContent = socket.protocol || '(none)'
  }
  socket.onclose = (event) => setState('ws-state', 'closed', `closed (${event.code})`)
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data)
    if (message.type === 'welcome') {
      showProtocol('ws', viaProtocol(message.via), VIA_HOW)
      logLine('ws-log', `← welcome: joined as ${message.protocol} over ${$('ws-proto').textContent}`, 'welcome')
      return
    }
    const rtt = sentAt.has(message.text) ? ` · ${Math.round(performance.now() - sentAt.get(message.text))} ms round trip` : ''
    sentAt.delete(message.text)
    if (message.type === 'echo') showProtocol('ws', viaProtocol(message.via), VIA_HOW)
    logLine('ws-log', `← ${message.type} "${message.text}"${message.type === 'echo' ? rtt : ''}`, message.type)
  }
  $('ws-form').addEventListener('submit', (event) => {
    event.preventDefault()
    const text = $('ws-input').value.trim()
    if (text === '' || socket.readyState !== WebSocket.OPEN) return
    sentAt.set(text, performance.now())
    socket.send(text)
    logLine('ws-log', `→ "${text}"`, 'sent')
  })
}

function setUpDownload () {
  $('download-start').addEventListener('click', async () => {
    $('download-start').disabled = true
    try {
      await download()
    } catch (err) {
      $('download-bytes').textContent = `failed: ${err.message}`
      $('download-percent').dataset.state = 'error'
    } finally {
      showFetched('download', '/files/download')
      $('download-start').disabled = false
    }
  })
}

async function download () {
  const started = performance.now()
  const response = await fetch('/files/download')
  if (!response.ok) throw new Error(`HTTP ${response.status}`)
  const total = Number(response.headers.get('x-download-bytes'))
  const reader = response.body.getReader()
  let received = 0
  let drawn = false
  const draw = () => {
    drawn = false
    const percent = Math.floor((received / total) * 100)
    const secs = (performance.now() - started) / 1000
    $('download-percent').textContent = `${percent} %`
    $('download-bar').style.width = `${percent}%`
    const late = secs * 1000 > timeout
    $('download-bytes').textContent = `${(received / MB).toFixed(1)} of ${(total / MB).toFixed(0)} MB · ` +
      `${(received / MB / Math.max(secs, 0.001)).toFixed(0)} MB/s · ${secs.toFixed(1)} s${late ? ' · past the timeout' : ''}`
    $('download-bytes').dataset.afterTimeout = String(late)
  }
  $('download-percent').dataset.state = 'running'
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    received += value.byteLength
    // The body arrives in many small chunks: redraw at most once per frame.
    if (!drawn) {
      drawn = true
      requestAnimationFrame(draw)
    }
  }
  if (received !== total) throw new Error(`stream ended after ${received} of ${total} bytes`)
  draw()
  $('download-percent').dataset.state = 'done'
}

function downloadPace ({ downloadMb, downloadMbPerS }) {
  if (downloadMbPerS === 0) return 'as fast as this page reads it'
  const secs = downloadMb / downloadMbPerS
  return `at ${downloadMbPerS} MB/s, about ${secs.toFixed(secs < 10 ? 1 : 0)} s`
}

function setUpSlowCall () {
  $('slow-call').addEventListener('click', async () => {
    $('slow-call').disabled = true
    $('slow-status').dataset.state = 'running'
    $('slow-status').textContent = 'waiting…'
    const started = performance.now()
    try {
      const response = await fetch('/files/slow')
      const body = await response.json()
      $('slow-status').textContent = `${response.status} ${body.error ?? 'OK'}`
      $('slow-status').dataset.state = response.ok ? 'ok' : 'error'
      // The deadline's JSON body names the phase in its message: "... (phase: response, after 2001 ms)".
      $('slow-phase').textContent = /phase: (\w+)/.exec(body.message ?? '')?.[1] ?? '–'
      $('slow-code').textContent = body.code ?? '–'
      $('slow-message').textContent = body.message ?? JSON.stringify(body)
    } catch (err) {
      $('slow-status').textContent = `failed: ${err.message}`
      $('slow-status').dataset.state = 'error'
    } finally {
      showFetched('slow', '/files/slow')
      $('slow-elapsed').textContent = seconds(performance.now() - started)
      $('slow-call').disabled = false
    }
  })
}

function setUpAuth () {
  const call = async (headers) => {
    const response = await fetch('/private/report', { headers })
    $('auth-status').textContent = `${response.status} ${response.statusText}`
    $('auth-status').dataset.state = response.ok ? 'ok' : 'error'
    $('auth-body').textContent = await response.text()
    showFetched('auth', '/private/report')
  }
  $('auth-without').addEventListener('click', () => call({}))
  $('auth-with').addEventListener('click', () => call({ authorization: 'Bearer demo-token' }))
}

function watchMetrics () {
  const refresh = async () => {
    const samples = parseMetrics(await (await fetch('/metrics')).text())
    $('m-open-streams').textContent = total(samples, 'ingress_open_streams')
    $('m-open-tunnels').textContent = total(samples, 'ingress_open_tunnels')
    $('m-expired').textContent = byLabel(samples, 'ingress_deadline_expired_total', (l) => `${l.phase} → ${l.outcome}`)
    $('m-ended-by').textContent = byLabel(samples, 'ingress_stream_seconds_count', (l) => l.ended_by)
    $('m-disconnects').textContent = byLabel(samples, 'ingress_client_disconnects_total', (l) => `before ${l.phase === 'response' ? 'headers' : 'the end'}`)
    $('m-upstream-errors').textContent = byLabel(samples, 'ingress_upstream_errors_total', (l) => l.code.replace('FST_STREAMLINE_', ''))
    $('metrics').dataset.state = 'loaded'
  }
  refresh()
  setInterval(refresh, 2000)
}

// The replicas card: a request every 300 ms, one at a time, and the replicas' state every second
// (running or stopped from the demo's own routes, the rest from /metrics).
function watchReplicas () {
  let sent = 0
  let failed = 0
  const ask = async () => {
    const started = performance.now()
    let line
    try {
      const response = await fetch('/live/whoami', { cache: 'no-store' })
      await response.arrayBuffer()
      const replica = response.headers.get('x-replica') ?? 'no x-replica'
      if (!response.ok) failed += 1
      line = { text: `${clockTime(new Date())}  ${response.status}  ${replica}  ${Math.round(performance.now() - started)} ms`, kind: response.ok ? replica : 'error' }
      if (sent === 0) showFetched('replicas', '/live/whoami')
    } catch (err) {
      failed += 1
      line = { text: `${clockTime(new Date())}  failed: ${err.message}`, kind: 'error' }
    }
    sent += 1
    $('replicas-sent').textContent = sent
    $('replicas-failed').textContent = failed
    $('replicas-failed').dataset.state = failed > 0 ? 'error' : 'ok'
    logLine('replicas-log', line.text, line.kind, 10)
    setTimeout(ask, 300)
  }
  const refresh = async () => {
    try {
      const samples = parseMetrics(await (await fetch('/metrics')).text())
      // Without the demo's own replicas (UPSTREAM_DNS, Kubernetes): the pool's view only, no buttons.
      const list = settings.demo.replicaControls
        ? await (await fetch('/demo/replicas')).json()
        : [...new Set(samples.filter((s) => s.name === 'ingress_replica_responses_total').map((s) => s.labels.replica))].map((name) => ({ name, running: null }))
      showReplicas(list, samples)
    } finally {
      setTimeout(refresh, 1000)
    }
  }
  ask()
  refresh()
}

function showReplicas (list, samples) {
  // A replica found by DNS has no ejected or healthy sample until a channel reports one.
  const value = (name, replica, absent = 0) => samples.find((s) => s.name === name && s.labels.replica === replica)?.value ?? absent
  const rows = list.map(({ name, running }) => {
    // What the ingress's pool thinks, from /metrics, beside what the demo did to the process.
    const state = value('ingress_replica_ejected', name) === 1 ? 'ejected' : value('ingress_replica_healthy', name, 1) === 0 ? 'unhealthy' : 'serving'
    const row = document.createElement('tr')
    row.dataset.replica = name
    row.dataset.state = state
    row.dataset.running = running
    const process = running === null ? 'not ours' : running ? 'running' : 'stopped'
    row.append(cell(name), cell(process, running === false ? 'replica-stopped' : 'replica-serving'), cell(state, `replica-${state}`),
      cell(String(value('ingress_replica_responses_total', name))), cell(String(value('ingress_replica_in_flight', name))),
      cell(String(value('ingress_replica_ejections_total', name))))
    const button = document.createElement('button')
    button.type = 'button'
    button.className = 'secondary'
    button.textContent = running ? 'Stop' : 'Start'
    button.addEventListener('click', async () => {
      button.disabled = true
      await fetch(`/demo/replicas/${name}/${running ? 'stop' : 'start'}`, { method: 'POST' })
    })
    const td = document.createElement('td')
    if (running !== null) td.append(button)
    row.append(td)
    return row
  })
  $('replicas-table').replaceChildren(...rows)
  $('replicas').dataset.state = 'loaded'
}

/** Prometheus text as [{ name, labels, value }]. */
function parseMetrics (text) {
  const samples = []
  for (const line of text.split('\n')) {
    const match = /^(\w+)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (match === null) continue
    const labels = Object.fromEntries([...(match[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]))
    samples.push({ name: match[1], labels, value: Number(match[3]) })
  }
  return samples
}

function total (samples, name) {
  return samples.filter((s) => s.name === name).reduce((sum, s) => sum + s.value, 0)
}

function byLabel (samples, name, label) {
  const parts = samples.filter((s) => s.name === name && s.value > 0).map((s) => `${label(s.labels)}: ${s.value}`)
  return parts.length > 0 ? parts.join(' · ') : 'none yet'
}

// Which protocol each card's request used. A fetch has a Resource Timing entry once its body has
// been read; an open EventSource or WebSocket has none, so for those the page shows what reached
// the ingress: the Via header it adds for the live service, echoed back (in the first tick, in
// the chat's welcome), or the in-app route's own httpVersion. (A browser opens a WebSocket with
// an HTTP/1.1 upgrade on a connection of its own unless the server offers RFC 8441 extended
// CONNECT over HTTP/2, as the example does with HTTPS=1.)
const VIA_HOW = 'the Via header the ingress sent upstream, echoed by the live service'
const VERSIONS = { '2.0': 'h2', 1.1: 'http/1.1', '1.0': 'http/1.0' }

function showProtocol (card, protocol, how) {
  const badge = $(`${card}-proto`)
  badge.dataset.proto = protocol || 'unknown'
  badge.textContent = PROTOCOL_NAMES[protocol] ?? protocol ?? 'unknown'
  badge.title = how
}

function viaProtocol (via) {
  // "2 streamline-example", after any earlier hops: the ingress's entry is the last.
  const version = via?.split(',').at(-1).trim().split(' ')[0]
  return VERSIONS[version === '2' ? '2.0' : version]
}

async function showFetched (card, path) {
  const url = new URL(path, location.href).href
  const entry = performance.getEntriesByName(url, 'resource').at(-1) ?? await nextEntry(url)
  showProtocol(card, entry.nextHopProtocol, 'from the fetch\'s resource timing entry')
}

// The entry is queued when the response ends, which can be just after the body was read.
function nextEntry (url) {
  return new Promise(resolve => {
    const observer = new PerformanceObserver(list => {
      const entry = list.getEntriesByName(url).at(-1)
      if (!entry) return
      observer.disconnect()
      resolve(entry)
    })
    observer.observe({ type: 'resource' })
  })
}

function setState (id, state, text) {
  $(id).dataset.state = state
  $(id).textContent = text
}

function logLine (id, text, kind, keep = 6) {
  const item = document.createElement('li')
  item.textContent = text
  item.className = kind
  $(id).prepend(item)
  while ($(id).children.length > keep) $(id).lastElementChild.remove()
}

function cell (text, className) {
  const td = document.createElement('td')
  td.textContent = text
  if (className && text) td.className = className
  return td
}

function ms (value) {
  return value >= 1000 && value % 100 === 0 ? `${value / 1000} s` : `${value} ms`
}

function seconds (value) {
  return `${(value / 1000).toFixed(2)} s`
}

function clockTime (date) {
  return date.toTimeString().slice(0, 8) + '.' + String(date.getMilliseconds()).padStart(3, '0')
}
