// ESLint for the TypeScript (src/, test/) and the plain JavaScript around it (bench/,
// scripts/). `npx eslint .` runs in .ci/run and must pass. The recommended sets of ESLint and
// typescript-eslint as they are, with these choices:
// - `_`-prefixed names are deliberately unused: the code drops a key from an object by
//   destructuring it into `_name` (`{ rootfs: _r, ...info }`);
// - no-control-regex stays on: the few regexps that mean control characters (tar's ASCII
//   range, a terminal's escape) say so on their line;
// - scripts/*.js are CommonJS programs run by node-gyp and npm, test/workers/*.js one a test
//   runs in a node process of its own: require() is theirs.
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'build/', 'prebuilds/', 'node_modules/', 'bench/results/', 'bench/.cache/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { ecmaVersion: 2022, globals: { ...globals.node } },
    rules: {
      '@typescript-eslint/no-unused-vars': [
        'error',
        {
          argsIgnorePattern: '^_',
          varsIgnorePattern: '^_',
          destructuredArrayIgnorePattern: '^_',
          caughtErrors: 'none',
        },
      ],
    },
  },
  {
    files: ['scripts/**/*.js', 'test/workers/**/*.js'],
    languageOptions: { sourceType: 'commonjs' },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
);
