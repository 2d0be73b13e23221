export { default as deadline } from './plugins/deadline/index.js'
export * from './plugins/deadline/index.js'
