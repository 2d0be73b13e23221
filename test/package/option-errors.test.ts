// Registration errors that say how to fix them: an unknown option names the known one it is a
// typo of; a wrong value is echoed (a URL without its credentials).
import Fastify from 'fastify'
import t from 'tap'
import deadline, { type RouteDeadlineOptions } from '../../plugins/deadline/index.js'
import proxy from '../../plugins/proxy/index.js'
import { nearestName } from '../../lib/option-checks.js'
import { registrationError } from '../helpers/registration.js'

t.test('an unknown deadline option names the nearest known one, at registration and in config.deadline', async (t) => {
  const cases: Array<[Record<string, unknown>, string]> = [
    [{ tmeout: 5000 }, 'Invalid deadline option tmeout: unknown option (did you mean timeout?)'],
    [{ Timeout: 5000 }, 'Invalid deadline option Timeout: unknown option (did you mean timeout?)'],
    [{ streamIdleTimout: 1 }, 'Invalid deadline option streamIdleTimout: unknown option (did you mean streamIdleTimeout?)'],
    [{ trustIncomming: true }, 'Invalid deadline option trustIncomming: unknown option (did you mean trustIncoming?)'],
    [{ frobnicate: 1 }, 'Invalid deadline option frobnicate: unknown option']
  ]
  for (const [options, message] of cases) {
    const err = await registrationError(deadline, options)
    t.same({ code: err.code, message: err.message }, { code: 'FST_STREAMLINE_INVALID_OPTION', message })
  }

  const app = Fastify()
  await app.register(deadline, {})
  const routes: Array<[Record<string, unknown>, string]> = [
    [{ tmeout: 5 }, 'Invalid deadline option config.deadline.tmeout: unknown option (did you mean timeout?)'],
    [{ streming: true }, 'Invalid deadline option config.deadline.streming: unknown option (did you mean streaming?)'],
    // a plugin option is not a route option, and no route option is near it
    [{ statusCode: 503 }, 'Invalid deadline option config.deadline.statusCode: unknown option']
  ]
  for (const [route, message] of routes) {
    t.throws(() => app.get(`/r${routes.findIndex(r => r[0] === route)}`, { config: { deadline: route as RouteDeadlineOptions } }, async () => 'x'),
      { code: 'FST_STREAMLINE_INVALID_OPTION', message: new RegExp(`^${message.replace(/[.()?]/g, '\\$&')}$`) })
  }
  await app.close()
})

t.test('an unknown proxy option, its own or one of @fastify/http-proxy\'s, names the nearest known one', async (t) => {
  const upstream = 'http://127.0.0.1:9'
  const cases: Array<[Record<string, unknown>, string]> = [
    [{ upstream, tmeout: 5000 }, 'tmeout: unknown option'],
    [{ upstream, prefx: '/api' }, 'prefx: unknown option (did you mean prefix?)'],
    [{ upstream, wsIdleTimout: 5 }, 'wsIdleTimout: unknown option (did you mean wsIdleTimeout?)'],
    [{ upstream, wsClientOption: {} }, 'wsClientOption: unknown option (did you mean wsClientOptions?)'],
    [{ upstream, internalRewriteLocationHeadr: false }, 'internalRewriteLocationHeadr: unknown option (did you mean internalRewriteLocationHeader?)'],
    [{ upstream, contentTypesToEncod: [] }, 'contentTypesToEncod: unknown option (did you mean contentTypesToEncode?)'],
    [{ upstream, undici: { pipelinig: 1 } }, 'undici.pipelinig: not supported (did you mean pipelining?)'],
    [{ upstream, undici: { connect: { timout: 5 } } }, 'undici.connect.timout: not supported (did you mean timeout?)'],
    [{ upstream, undici: { maxRedirections: 2 } }, 'undici.maxRedirections: not supported (connections, pipelining, keepAliveTimeout, headersTimeout, bodyTimeout, connect and undici Agent tuning options are)']
  ]
  for (const [options, message] of cases) {
    const err = await registrationError(proxy, options)
    t.same({ code: err.code, message: err.message }, { code: 'FST_STREAMLINE_PROXY_INVALID_OPTION', message: `Invalid proxy option ${message}` })
  }

  // The proxy's `config.deadline` is checked by the deadline plugin, when its route is added.
  const app = Fastify()
  await app.register(deadline, {})
  await t.rejects(async () => { await app.register(proxy, { upstream, config: { deadline: { tmeout: 5 } as RouteDeadlineOptions } }) },
    { code: 'FST_STREAMLINE_INVALID_OPTION', message: 'Invalid deadline option config.deadline.tmeout: unknown option (did you mean timeout?)' })
  await app.close()
})

t.test('a wrong value is echoed: strings quoted, arrays as JSON, a URL\'s credentials left out', async (t) => {
  const deadlineCases: Array<[Record<string, unknown>, string]> = [
    [{ propagationHeader: 'x budget' }, 'propagationHeader: expected a valid header name, got "x budget"'],
    [{ propagationHeader: 5 }, 'propagationHeader: expected a valid header name, got 5'],
    [{ statusCode: '504' }, 'statusCode: expected an integer from 400 to 599, got "504"'],
    [{ trustIncoming: 'yes' }, 'trustIncoming: expected a boolean or a function (request) => boolean, got "yes"'],
    [{ timeout: '5s' }, 'timeout: expected milliseconds (a finite number >= 0), got 5s']
  ]
  for (const [options, message] of deadlineCases) t.equal((await registrationError(deadline, options)).message, `Invalid deadline option ${message}`)

  const upstream = 'http://127.0.0.1:9'
  const proxyCases: Array<[Record<string, unknown>, string]> = [
    [{ upstream: '127.0.0.1:3000' }, 'upstream: expected a URL starting with http:// or https://, or a function (request) => URL, got "127.0.0.1:3000"'],
    [{ upstream: 'user:secret@127.0.0.1:3000' }, 'upstream: expected a URL starting with http:// or https://, or a function (request) => URL, got "…@127.0.0.1:3000"'],
    [{ upstream: 'http://user:secret@127.0.0.1:3000/' }, 'upstream: expected an absolute http(s) URL without query, fragment or credentials, got "http://…@127.0.0.1:3000/"'],
    [{ upstream, wsUpstream: 'ftp://x' }, 'wsUpstream: expected a URL starting with ws://, wss://, http:// or https://, or a function (request) => URL, got "ftp://x"'],
    [{ upstream, prefix: 'api' }, 'prefix: expected a path starting with /, got "api"'],
    [{ upstream, httpMethods: ['get'] }, 'httpMethods: expected a non-empty array of upper-case method names, got ["get"]'],
    [{ upstream, retries: -1 }, 'retries: expected an integer >= 0, got -1'],
    [{ upstream, websocket: 'yes' }, 'websocket: expected a boolean, got "yes"'],
    [{ upstream, rewriteHeaders: 5 }, 'rewriteHeaders: expected a function, got 5'],
    [{ upstream, tls: 'strict' }, 'tls: expected an object, got "strict"'],
    [{ upstream, routes: '/*' }, 'routes: expected a non-empty array of paths starting with /, got "/*"'],
    [{ upstream, undici: 'yes' }, 'undici: expected true, undici Agent options or an undici Dispatcher, got "yes"']
  ]
  for (const [options, message] of proxyCases) t.equal((await registrationError(proxy, options)).message, `Invalid proxy option ${message}`)
})

t.test('nearestName: a typo\'s nearest known name, none when nothing is near', async (t) => {
  const known = ['timeout', 'streamIdleTimeout', 'maxStreamDuration', 'streaming']
  t.equal(nearestName('tiemout', known), 'timeout', 'two letters swapped: one edit')
  t.equal(nearestName('TIMEOUT', known), 'timeout', 'case ignored')
  t.equal(nearestName('maxStreamDurations', known), 'maxStreamDuration')
  t.equal(nearestName('idle', known), undefined, 'a part of a name is not a typo of it')
  t.equal(nearestName('tim', known), undefined, 'short names: one edit at most')
  t.equal(nearestName('ab', ['ac', 'ad']), 'ac', 'a tie: the first known name')
})
