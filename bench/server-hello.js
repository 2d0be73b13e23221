// Hello-world server for the deadline bench. MODE=plain: bare Fastify; MODE=deadline: the same app
// with the deadline plugin registered with its defaults, covering the route.
import Fastify from 'fastify'
import { deadline } from 'fastify-streamline'
import { serve, fastifyServer } from './child.js'

const app = Fastify({ logger: false })
if (process.env.MODE === 'deadline') await app.register(deadline)
app.get('/', async () => ({ hello: 'world' }))

await serve(...fastifyServer(app))
