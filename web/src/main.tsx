import { render } from 'preact';
import { App } from './app';
import { applyTheme, watchSystemTheme } from './lib/theme';
import './styles.css';

applyTheme();
watchSystemTheme();

const root = document.getElementById('app');
if (root) render(<App />, root);
