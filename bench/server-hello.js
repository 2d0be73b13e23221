// Hello-world server for the deadline bench. MODE=bare: a Fastify app with one route and nothing
// registered; MODE=baseline: the same app with an empty plugin registered first, booting as any
// app with plugins does; MODE=deadline: the deadline plugin, with its defaults, in its place.
import Fastify from 'fastify'
import fp from 'fastify-plugin'
import { deadline } from 'fastify-streamline'
import { serve, fastifyServer } from './child.js'

const app = Fastify({ logger: false })
if (process.env.MODE === 'baseline') await app.register(fp(async () => {}, { name: 'empty' }))
if (process.env.MODE === 'deadline') await app.register(deadline)
app.get('/', async () => ({ hello: 'world' }))

await serve(...fastifyServer(app))
